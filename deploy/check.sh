#!/usr/bin/env bash
# Checks everything in deploy/: the systemd units, the sysusers entry, the Prometheus scrape
# configuration and alert rules (with their unit tests), and the Grafana dashboard. Exits
# non-zero if any check fails.
#
#   deploy/check.sh
#
# Needs systemd-analyze (package systemd), promtool (prometheus) and jq; on a fresh Debian
# machine run scripts/install-deps.sh first. Needs no root and changes nothing on the machine:
# the units are verified as copies whose programs point at stand-ins, since systemd-analyze
# verify wants the ExecStart programs to exist and the daemons need not be installed.
set -uo pipefail

deploy="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$deploy")"
failures=0

pass() { echo "ok    $*"; }
fail() {
    echo "FAIL  $*" >&2
    failures=$((failures + 1))
}
# Runs a command quietly; on failure prints its output.
check() {
    local what="$1"
    shift
    local out
    if out="$("$@" 2>&1)"; then
        pass "$what"
    else
        fail "$what: \`$*\`"
        printf '%s\n' "$out" | sed 's/^/      /' >&2
    fi
}

missing=()
for tool in systemd-analyze systemd-sysusers promtool jq; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -ne 0 ]; then
    echo "deploy/check.sh: missing ${missing[*]}: run scripts/install-deps.sh (as root)" >&2
    exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ---- systemd ---------------------------------------------------------------------------------

units=(pgm-routerd pgm-dlrd)
mkdir -p "$tmp/bin" "$tmp/units"
for u in "${units[@]}"; do
    printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/$u"
    chmod +x "$tmp/bin/$u"
    sed "s#/usr/local/bin/#$tmp/bin/#g" "$deploy/systemd/$u.service" >"$tmp/units/$u.service"
done
unit_files=()
for u in "${units[@]}"; do unit_files+=("$tmp/units/$u.service"); done
# verify exits 0 on many problems (a bad value is only logged): any output is a failure.
if out="$(systemd-analyze verify "${unit_files[@]}" 2>&1)" && [ -z "$out" ]; then
    pass "systemd-analyze verify ${units[*]}"
else
    fail "systemd-analyze verify ${units[*]}"
    printf '%s\n' "$out" | sed 's/^/      /' >&2
fi

# The exposure score of `systemd-analyze security` (0 best, 10 worst); 2.5 leaves room for the
# two capabilities and the raw sockets the daemons exist to use.
if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    for u in "${units[@]}"; do
        check "systemd-analyze security $u.service (exposure at most 2.5)" \
            systemd-analyze security --offline=yes --threshold=25 --no-pager "$tmp/units/$u.service"
    done
else
    echo "skip  systemd-analyze security --offline (needs systemd 250 or later)"
fi

# Policy: the directives the units must have, exactly.
for u in "${units[@]}"; do
    f="$deploy/systemd/$u.service"
    before=$failures
    for directive in \
        "User=pgm" "Group=pgm" \
        "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN" \
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN" \
        "NoNewPrivileges=yes" "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" \
        "RestrictAddressFamilies=AF_INET AF_NETLINK AF_UNIX" \
        "SystemCallFilter=@system-service" \
        'ExecReload=/bin/kill -HUP $MAINPID'; do
        grep -qxF -- "$directive" "$f" || fail "$u.service lacks \`$directive\`"
    done
    grep -q "^ExecStartPre=/usr/local/bin/$u --check-config " "$f" ||
        fail "$u.service does not check its configuration before starting"
    grep -qE '^(User=(root|0)|DynamicUser=)' "$f" && fail "$u.service does not run as user pgm"
    [ "$(grep -c '^AmbientCapabilities=' "$f")" -eq 1 ] || fail "$u.service: one AmbientCapabilities= line"
    [ "$failures" -eq "$before" ] && pass "$u.service: policy (user pgm, two capabilities, sandboxing, reload)"
done
check "systemd-sysusers --dry-run pgm.sysusers.conf" \
    systemd-sysusers --dry-run "$deploy/systemd/pgm.sysusers.conf"

# ---- Prometheus ------------------------------------------------------------------------------

check "promtool check config prometheus.yml" promtool check config "$deploy/prometheus/prometheus.yml"
check "promtool check rules alerts.yml" promtool check rules "$deploy/prometheus/alerts.yml"
check "promtool test rules alerts_test.yml" \
    bash -c "cd '$deploy/prometheus' && promtool test rules alerts_test.yml"
for alert in PgmNakStorm PgmRepairStateNearLimit PgmRdataDroppedNoState PgmNoSpmFromSource; do
    grep -q "alert: $alert\$" "$deploy/prometheus/alerts.yml" || fail "alerts.yml lacks $alert"
done

# ---- Grafana ---------------------------------------------------------------------------------

dash="$deploy/grafana/pgm.json"
if ! jq -e . "$dash" >/dev/null 2>&1; then
    fail "grafana/pgm.json is not valid JSON"
else
    pass "grafana/pgm.json is valid JSON"
    check "grafana/pgm.json: uid, title, panels with unique ids" jq -e '
        (.uid | type == "string") and (.title | type == "string")
        and (.panels | length > 0)
        and ([.panels[].id] | length == (unique | length))
        and all(.panels[]; .type == "row" or ((.targets | length) > 0 and all(.targets[]; .expr | length > 0)))
    ' "$dash"
    # Every query must parse as PromQL: promtool checks them as recording rules, with
    # Grafana's variables replaced by plain values.
    {
        echo "groups:"
        echo "  - name: dashboard"
        echo "    rules:"
        jq -r '.. | .expr? // empty' "$dash" |
            sed -e 's/\$__rate_interval/5m/g' -e 's/\$[a-z_]*/.*/g' |
            jq -R -r '"      - record: dashboard:query\n        expr: " + tojson'
    } >"$tmp/dashboard-rules.yml"
    check "grafana/pgm.json: every query is valid PromQL" promtool check rules "$tmp/dashboard-rules.yml"
fi

# ---- metric names ------------------------------------------------------------------------------

# Every pgm_router_* / pgm_dlr_* name the dashboard and the alerts use must be one the daemons
# export. pgm-routerd builds its names as "pgm_router_" + the literal in metrics.rs.
names="$({
    jq -r '.. | .expr? // empty' "$dash"
    grep -E '^\s+expr:' "$deploy/prometheus/alerts.yml"
} | grep -oE 'pgm_(router|dlr)_[a-z0-9_]*[a-z0-9]' | sort -u)"
dlr_src="$(cat "$root"/dlr/src/*.rs 2>/dev/null)"
unknown=0
for m in $names; do
    case "$m" in
    pgm_router_*)
        s="${m#pgm_router_}"
        if ! grep -qE "\"($s|$m)\"" "$root/router/src/metrics.rs"; then
            fail "metric $m is not exported by pgm-routerd (router/src/metrics.rs)"
            unknown=1
        fi
        ;;
    pgm_dlr_*)
        s="${m#pgm_dlr_}"
        if ! grep -qE "\"$s\"|\\b$m\\b" <<<"$dlr_src"; then
            if grep -q 'pgm_dlr_' <<<"$dlr_src"; then
                fail "metric $m is not exported by pgm-dlrd (dlr/src)"
                unknown=1
            else
                echo "note  $m: pgm-dlrd exports no metrics yet, not checked"
            fi
        fi
        ;;
    esac
done
[ "$unknown" -eq 0 ] && pass "dashboard and alerts use only metrics the daemons export ($(wc -w <<<"$names") names)"

if [ "$failures" -ne 0 ]; then
    echo "deploy/check.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "deploy/check.sh: all checks passed"
