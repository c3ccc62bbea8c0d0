#!/usr/bin/env python3
"""RFC 3208 compliance summary from duvet's JSON report; run by scripts/duvet.sh.

    scripts/rfc3208_compliance.py --report .duvet/reports/report.json \
        --out docs/rfc3208-compliance.md

Checks, failing (exit 1) with one line per problem:
  - every `//#` quote in a Rust file belongs to an annotation that has a `//=` line (duvet
    silently drops a `//#` block without one, so it would never be checked);
  - every quote, in the sources and in .duvet/exceptions/*.toml, is verbatim text of the
    section its target names: the RFC text and the quote are compared with runs of whitespace
    (line breaks, indentation, the two spaces after a full stop) made one space, and nothing
    else forgiven (duvet itself accepts one edited character and spacing around punctuation);
  - every annotation names RFC 3208 (https://www.rfc-editor.org/rfc/rfc3208#section-X);
  - every `type=exception` annotation has a `reason=`;
  - no Rust file outside the patterns of .duvet/config.toml carries an annotation, and duvet's
    report lists exactly the annotations read here (nothing skipped on either side).

Then writes the summary (deterministic: it changes only when an annotation or the RFC's
requirements do): counts per section, and every MUST/SHOULD-level sentence (MUST, MUST NOT,
REQUIRED, SHALL, SHOULD, SHOULD NOT, RECOMMENDED) of §§5-9 and Appendix D (§14) with the
annotations that cite it (file:line), the tests, and the exceptions with their reasons.

Python 3.11+ standard library only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field

RFC_URL = "https://www.rfc-editor.org/rfc/rfc3208"
# Sections whose MUST/SHOULD sentences are listed one by one: §§5-9 and Appendix D (§14).
LISTED_TOP = ("5", "6", "7", "8", "9", "14")
APPENDIX = {
    "11": "Appendix A",
    "12": "Appendix B",
    "13": "Appendix C",
    "14": "Appendix D",
    "15": "Appendix E",
    "16": "Appendix F",
    "17": "Appendix G",
}
KEYWORDS = re.compile(
    r"\b(MUST NOT|SHALL NOT|SHOULD NOT|NOT RECOMMENDED|MUST|SHALL|REQUIRED|SHOULD|RECOMMENDED)\b"
)
# Directories never scanned for stray annotations.
SKIP_DIRS = {".git", "target", ".duvet", "build", "node_modules"}


def norm(text: str) -> str:
    """Runs of whitespace made one space, ends trimmed: the only difference forgiven. A line
    break right after a hyphen is dropped with the indentation that follows, as the RFC breaks
    a compound ("network-header") at its hyphen and never hyphenates a word."""
    return " ".join(re.sub(r"-[ \t]*\n\s*", "-", text).split())


def section_key(section_id: str) -> tuple:
    """'section-9.5.2.1' -> (9, 5, 2, 1); other ids (name-abstract) sort first."""
    if not section_id.startswith("section-"):
        return (-1, section_id)
    return tuple(int(p) for p in section_id[len("section-") :].split("."))


def section_label(section_id: str) -> str:
    num = section_id[len("section-") :]
    top = num.split(".")[0]
    if top in APPENDIX:
        return f"§{num} ({APPENDIX[top]})"
    return f"§{num}"


@dataclass
class SourceAnno:
    """One annotation as read from a Rust file, the way duvet's comment parser groups it."""

    path: str
    line: int  # 1-based line of its first `//=`, as duvet reports it
    target: str | None = None
    kind: str | None = None
    reasons: list[str] = field(default_factory=list)
    quote_lines: list[str] = field(default_factory=list)
    quote_line: int = 0  # 1-based line of its first `//#`
    other_keys: dict[str, str] = field(default_factory=dict)

    @property
    def quote(self) -> str:
        # As the RFC's own lines: a `//#` line that ends with a hyphen runs on into the next.
        return "\n".join(self.quote_lines)


def scan_file(path: str, problems: list[str]) -> list[SourceAnno]:
    """Duvet 0.4's tokenizer and comment parser: a line whose trimmed start is `//=` is
    metadata (`key=value`, or the target alone), `//#` is quote text. Consecutive such lines
    form one annotation; any other line (code, blank, plain comment) ends it, and a `//=`
    after `//#` lines starts the next one. A block of `//#` lines with no `//=` is what duvet
    drops without a word: reported here."""
    annos: list[SourceAnno] = []
    cur_meta: SourceAnno | None = None
    orphan_start = 0
    orphan_lines: list[str] = []
    prev_line = -2
    in_content = False

    def flush() -> None:
        nonlocal cur_meta, orphan_lines, in_content
        if cur_meta is not None:
            annos.append(cur_meta)
        elif orphan_lines:
            problems.append(
                f"{path}:{orphan_start}: `//#` quote without a `//=` line naming its section "
                f"(duvet ignores it): {norm(' '.join(orphan_lines))[:100]!r}"
            )
        cur_meta = None
        orphan_lines = []
        in_content = False

    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for idx, raw in enumerate(lines):
        stripped = raw.lstrip()
        if stripped.startswith("//="):
            kind = "meta"
            body = stripped[3:].strip()
        elif stripped.startswith("//#"):
            kind = "content"
            body = stripped[3:].strip()
        else:
            continue
        if idx > prev_line + 1:
            flush()
        prev_line = idx
        if kind == "meta":
            if in_content:
                flush()
            if cur_meta is None:
                if orphan_lines:
                    flush()
                cur_meta = SourceAnno(path=path, line=idx + 1)
            key, sep, value = body.partition("=")
            if not sep:
                cur_meta.target = key.strip()
            else:
                key, value = key.strip(), value.strip()
                if key == "source":
                    cur_meta.target = value
                elif key == "type":
                    cur_meta.kind = value.lower()
                elif key == "reason":
                    cur_meta.reasons.append(value)
                else:
                    cur_meta.other_keys[key] = value
        else:
            in_content = True
            if body:
                if cur_meta is not None:
                    if not cur_meta.quote_lines:
                        cur_meta.quote_line = idx + 1
                    cur_meta.quote_lines.append(body)
                else:
                    if not orphan_lines:
                        orphan_start = idx + 1
                    orphan_lines.append(body)
    flush()
    return annos


def config_sources(config_path: str) -> list[tuple[str, str]]:
    with open(config_path, "rb") as f:
        cfg = tomllib.load(f)
    out = []
    for src in cfg.get("source", []):
        out.append((src["pattern"], src.get("type", "implementation")))
    return out


def scan_sources(config_path: str, problems: list[str]) -> list[tuple[SourceAnno, str]]:
    """Every annotation in the files of .duvet/config.toml's [[source]] patterns, with the
    file's default type; and a problem for each annotated Rust file outside them."""
    seen: dict[str, str] = {}
    for pattern, default_type in config_sources(config_path):
        for path in sorted(glob.glob(pattern, recursive=True)):
            seen.setdefault(os.path.normpath(path), default_type)
    result = []
    for path, default_type in sorted(seen.items()):
        for anno in scan_file(path, problems):
            result.append((anno, default_type))

    for root, dirs, files in os.walk("."):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.normpath(os.path.join(root, name))
            if path in seen:
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                for lineno, raw in enumerate(f, 1):
                    s = raw.lstrip()
                    if s.startswith("//=") or s.startswith("//#"):
                        problems.append(
                            f"{path}:{lineno}: annotation in a file no [[source]] pattern of "
                            f"{config_path} covers: add the pattern"
                        )
                        break
    return result


def section_texts(spec: dict) -> dict[str, tuple[str, str]]:
    """Section id -> (title, whitespace-normalised text) from the report's line fragments."""
    out = {}
    for sec in spec["sections"]:
        parts = []
        for line in sec["lines"]:
            if isinstance(line, str):
                parts.append(line)
            else:
                parts.append("".join(frag[2] for frag in line))
        out[sec["id"]] = (sec["title"], norm("\n".join(parts)))
    return out


def target_section(target: str | None) -> str | None:
    if not target or "#" not in target:
        return None
    url, _, section = target.partition("#")
    if url.rstrip("/") != RFC_URL:
        return None
    return section


def md_escape(text: str) -> str:
    return norm(text).replace("|", "\\|")


def link(path: str, line: int) -> str:
    return f"[{path}:{line}](../{path}#L{line})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", default=".duvet/reports/report.json")
    ap.add_argument("--config", default=".duvet/config.toml")
    ap.add_argument("--out", default="docs/rfc3208-compliance.md")
    args = ap.parse_args()

    with open(args.report, encoding="utf-8") as f:
        report = json.load(f)
    spec = report["specifications"].get(RFC_URL)
    if spec is None:
        print(f"{args.report}: no specification {RFC_URL}", file=sys.stderr)
        return 1
    texts = section_texts(spec)
    annotations = report["annotations"]
    statuses = report["statuses"]

    problems: list[str] = []

    # --- the annotations in the sources -------------------------------------------------
    source_annos = scan_sources(args.config, problems)
    checked_quotes = 0
    for anno, default_type in source_annos:
        where = f"{anno.path}:{anno.line}"
        section = target_section(anno.target)
        kind = anno.kind or default_type
        if anno.target is None:
            problems.append(f"{where}: `//=` lines without a target URL")
            continue
        if section is None:
            problems.append(
                f"{where}: target {anno.target!r} is not {RFC_URL}#section-X (the only "
                "specification configured)"
            )
            continue
        if section not in texts:
            problems.append(f"{where}: RFC 3208 has no {section}")
            continue
        if kind == "exception" and not anno.reasons:
            problems.append(f"{where}: `//= type=exception` without a `//= reason=`")
        if anno.quote_lines:
            checked_quotes += 1
            if norm(anno.quote) not in texts[section][1]:
                problems.append(
                    f"{anno.path}:{anno.quote_line}: not verbatim text of {section_label(section)}"
                    f" ({texts[section][0]}): {norm(anno.quote)!r}"
                )

    # --- the exceptions kept in .duvet/exceptions/*.toml -----------------------------------
    toml_exceptions = 0
    for path in sorted(glob.glob(".duvet/exceptions/**/*.toml", recursive=True)):
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        default_target = doc.get("target")
        for entry in doc.get("exception", []):
            toml_exceptions += 1
            target = entry.get("target", default_target)
            section = target_section(target)
            if section is None or section not in texts:
                problems.append(f"{path}: exception target {target!r} is not a section of RFC 3208")
                continue
            if not norm(entry.get("reason", "")):
                problems.append(f"{path}: exception without a reason: {entry.get('quote')!r}")
            if norm(entry["quote"]) not in texts[section][1]:
                problems.append(
                    f"{path}: exception quote not verbatim text of {section_label(section)}: "
                    f"{norm(entry['quote'])!r}"
                )

    # --- duvet's report lists the same annotations ------------------------------------------
    ours = {(os.path.normpath(a.path), a.line) for a, _ in source_annos}
    theirs = {
        (os.path.normpath(a["source"]), a.get("line", 0))
        for a in annotations
        if not a["source"].startswith(".duvet/")
    }
    for path, line in sorted(ours - theirs):
        problems.append(f"{path}:{line}: annotation missing from duvet's report")
    for path, line in sorted(theirs - ours):
        problems.append(f"{path}:{line}: annotation in duvet's report not found in the source")

    if problems:
        for p in problems:
            print(f"rfc3208 compliance: {p}", file=sys.stderr)
        print(
            f"rfc3208 compliance: {len(problems)} problem(s); a `//#` quote must be the RFC's "
            "text, verbatim, of the section its `//=` names (or make it a plain `//` comment "
            "citing §X.Y)",
            file=sys.stderr,
        )
        return 1

    # --- the summary -------------------------------------------------------------------------
    def kind_of(a: dict) -> str:
        return a.get("type", "CITATION").upper()

    code_kinds: dict[str, int] = {}
    per_section_annos: dict[str, dict[str, int]] = {}
    for a in annotations:
        k = kind_of(a)
        if k == "SPEC":
            continue
        code_kinds[k] = code_kinds.get(k, 0) + 1
        sec = a.get("target_section", "")
        per_section_annos.setdefault(sec, {}).setdefault(k, 0)
        per_section_annos[sec][k] += 1

    requirements = []  # (section, index, annotation, related by kind)
    for idx, a in enumerate(annotations):
        if kind_of(a) != "SPEC" or a["target_path"].rstrip("/") != RFC_URL:
            continue
        status = statuses.get(str(idx), {})
        related: dict[str, list[dict]] = {}
        for rid in status.get("related", []):
            r = annotations[rid]
            related.setdefault(kind_of(r), []).append(r)
        requirements.append((a["target_section"], idx, a, related))
    requirements.sort(key=lambda t: (section_key(t[0]), t[2].get("line", 0)))

    def coverage(related: dict) -> str:
        """What the code's annotations say of a requirement, exceptions aside."""
        cited = bool(related.get("CITATION") or related.get("IMPLICATION"))
        tested = bool(related.get("TEST"))
        if cited and tested:
            return "cited, tested"
        if cited:
            return "cited, untested"
        if tested:
            return "tested only"
        if related.get("TODO"):
            return "todo"
        return "not cited"

    def state(related: dict) -> str:
        """The one class a requirement is counted in: an exception wins."""
        return "exception" if related.get("EXCEPTION") else coverage(related)

    def status_text(related: dict) -> str:
        cov = coverage(related)
        if not related.get("EXCEPTION"):
            return cov
        # Cited and excepted: done one way in one place (or for one role), not in another.
        return "exception" if cov == "not cited" else f"exception; {cov}"

    per_section: dict[str, dict[str, int]] = {}
    for sec, _, a, related in requirements:
        row = per_section.setdefault(sec, {})
        level = a.get("level", "MAY")
        row[level] = row.get(level, 0) + 1
        if level in ("MUST", "SHOULD"):
            st = state(related)
            row[st] = row.get(st, 0) + 1

    listed = [
        t
        for t in requirements
        if t[0].split("-")[1].split(".")[0] in LISTED_TOP and t[2].get("level") in ("MUST", "SHOULD")
    ]
    totals: dict[str, int] = {}
    for _, _, a, related in listed:
        st = state(related)
        totals[st] = totals.get(st, 0) + 1
        totals[a["level"]] = totals.get(a["level"], 0) + 1

    out: list[str] = []
    w = out.append
    w("# RFC 3208 compliance")
    w("")
    w("Generated by `scripts/duvet.sh` (part of `scripts/test.sh`) from the `//=`/`//#` annotations")
    w("in the sources, checked by [duvet](https://github.com/awslabs/duvet) against the vendored")
    w("RFC (`.duvet/specifications/`) and by `scripts/rfc3208_compliance.py` for verbatim quotes.")
    w("Do not edit: run `scripts/duvet.sh` and commit the result. The browsable report is")
    w("`.duvet/reports/report.html` after a run.")
    w("")
    w("A requirement is one sentence of the RFC with MUST, MUST NOT, REQUIRED, SHALL, SHOULD,")
    w("SHOULD NOT or RECOMMENDED (duvet's MUST and SHOULD levels; MAY sentences are counted only).")
    w("*Cited* means an annotation in the implementation quotes it (or part of it), *tested* that")
    w("a test does, *exception* that the code deliberately does otherwise, for the reason given.")
    w("A requirement no annotation quotes may still be implemented: the annotations cover the")
    w("rules whose place in the code is worth pointing at, and the list below shows which.")
    w("")
    w("Section numbers are duvet's reading of the RFC's text: §9.7.2 (OPT_FIN, sources) is")
    w("indented in the RFC as if part of §9.7.1, so its sentences are listed, and must be cited,")
    w("under §9.7.1.")
    w("")
    w("## Headline")
    w("")
    w(f"- Annotations: {sum(code_kinds.values())} "
      f"({code_kinds.get('CITATION', 0)} citations, {code_kinds.get('TEST', 0)} tests, "
      f"{code_kinds.get('IMPLICATION', 0)} implications, {code_kinds.get('EXCEPTION', 0)} "
      f"exceptions, {code_kinds.get('TODO', 0)} todos), {checked_quotes} quotes in the sources"
      f" and {toml_exceptions} in `.duvet/exceptions/` checked verbatim.")
    w(f"- §§5-9 and Appendix D: {len(listed)} requirements ({totals.get('MUST', 0)} MUST-level, "
      f"{totals.get('SHOULD', 0)} SHOULD-level): {totals.get('cited, tested', 0)} cited and "
      f"tested, {totals.get('cited, untested', 0)} cited but not tested, "
      f"{totals.get('tested only', 0)} tested only, {totals.get('exception', 0)} exceptions, "
      f"{totals.get('not cited', 0) + totals.get('todo', 0)} not cited.")
    w("")
    w("## Counts per section")
    w("")
    w("Every section with a requirement or an annotation. MUST/SHOULD/MAY: requirements of that")
    w("level; the next columns split the MUST and SHOULD ones; *annotations* counts those that")
    w("name the section (citations + tests + exceptions).")
    w("")
    w("| Section | Title | MUST | SHOULD | MAY | cited+tested | cited | tested only | exception | not cited | annotations |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    all_secs = sorted(set(per_section) | {s for s in per_section_annos if s in texts}, key=section_key)
    for sec in all_secs:
        row = per_section.get(sec, {})
        annos = per_section_annos.get(sec, {})
        w(
            f"| {section_label(sec)} | {md_escape(texts[sec][0])} | {row.get('MUST', 0)} | "
            f"{row.get('SHOULD', 0)} | {row.get('MAY', 0)} | {row.get('cited, tested', 0)} | "
            f"{row.get('cited, untested', 0)} | {row.get('tested only', 0)} | "
            f"{row.get('exception', 0)} | {row.get('not cited', 0) + row.get('todo', 0)} | "
            f"{sum(annos.values())} |"
        )
    w("")
    w("## Requirements of §§5-9 and Appendix D")
    w("")
    current = None
    for sec, _, a, related in listed:
        if sec != current:
            if current is not None:
                w("")
            current = sec
            w(f"### {section_label(sec)} {texts[sec][0]}")
            w("")
            w("| Keyword | Requirement | Status | Implemented | Tested | Exception |")
            w("|---|---|---|---|---|---|")
        words = []
        for m in KEYWORDS.findall(a["comment"]):
            if m not in words:
                words.append(m)

        def refs(kind: str) -> str:
            items = sorted(
                {(r["source"], r.get("line", 0)) for r in related.get(kind, [])}
            )
            return "<br>".join(link(p, n) for p, n in items)

        impl = refs("CITATION")
        if related.get("IMPLICATION"):
            impl = "<br>".join(x for x in (impl, refs("IMPLICATION") + " (implication)") if x)
        exc = "<br>".join(
            f"{link(r['source'], r.get('line', 0))}: {md_escape(r.get('comment', ''))}"
            for r in sorted(related.get("EXCEPTION", []), key=lambda r: (r["source"], r.get("line", 0)))
        )
        w(
            f"| {', '.join(words) or a['level']} | {md_escape(a['comment'])} | {status_text(related)} | "
            f"{impl} | {refs('TEST')} | {exc} |"
        )
    if current is not None:
        w("")

    # Each exception with the requirement(s) it covers, in RFC order.
    covers: dict[int, list[str]] = {}
    for _, _, a, related in requirements:
        for r in related.get("EXCEPTION", []):
            covers.setdefault(id(r), []).append(norm(a["comment"]))
    exceptions = [a for a in annotations if kind_of(a) == "EXCEPTION"]
    w("## Exceptions")
    w("")
    w("Every deliberate deviation, with the requirement it departs from and why.")
    w("")
    if not exceptions:
        w("None.")
    for a in sorted(exceptions, key=lambda a: (section_key(a["target_section"]), a["source"], a.get("line", 0))):
        reqs = " / ".join(f"\"{md_escape(q)}\"" for q in covers.get(id(a), [])) or "(no requirement)"
        w(f"- **{section_label(a['target_section'])}** {reqs} ({link(a['source'], a.get('line', 0))}): "
          f"{md_escape(a.get('comment', ''))}")
    w("")

    text = "\n".join(out)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    old = None
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            old = f.read()
    if old != text:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    print(
        f"rfc3208 compliance: {checked_quotes + toml_exceptions} quotes verbatim; "
        f"§§5-9 + App. D: {len(listed)} MUST/SHOULD requirements, "
        f"{totals.get('cited, tested', 0)} cited+tested, {totals.get('cited, untested', 0)} cited, "
        f"{totals.get('tested only', 0)} tested only, {totals.get('exception', 0)} exceptions, "
        f"{totals.get('not cited', 0) + totals.get('todo', 0)} not cited; "
        f"{args.out} {'updated' if old != text else 'unchanged'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
