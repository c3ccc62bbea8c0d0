//! Reading the daemons' `/metrics`: the Prometheus text exposition format.
//!
//! [`samples`] parses every sample line (`name{label="value",...} value [timestamp]`), skipping
//! comments (`# HELP`, `# TYPE`), blank lines and anything malformed, never panicking;
//! [`sum`] adds up the samples of one metric that carry given labels, which is how the tests
//! read a counter across the label sets they do not care about.

/// One sample of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The metric name.
    pub name: &'a str,
    /// Its labels, in exposition order, values unescaped.
    pub labels: Vec<(&'a str, String)>,
    /// The value (`NaN` and `±Inf` included).
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every well-formed sample of the exposition `text`, in order.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(parse_line)
}

/// The sum of the samples of metric `name` that carry every `labels` pair (other labels may
/// be there too), each sample's value truncated to an integer (negative and `NaN` as 0).
/// 0 if there is none.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    samples(text)
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value as u64)
        .sum()
}

fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    // The value, then an optional timestamp.
    let mut fields = rest.split_ascii_whitespace();
    let value = parse_value(fields.next()?)?;
    match (fields.next(), fields.next()) {
        (None, _) => {}
        (Some(ts), None) if ts.parse::<i64>().is_ok() => {}
        _ => return None,
    }
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `key="value",...}` into `labels`; returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(&'a str, String)>) -> Option<&'a str> {
    loop {
        s = s.trim_start().trim_start_matches(',').trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some(rest);
        }
        let (key, after) = s.split_once('=')?;
        let key = key.trim();
        if key.is_empty() {
            return None;
        }
        let body = after.trim_start().strip_prefix('"')?;
        let mut chars = body.char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &body[end + 1..];
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP pgm_router_sent_packets_total PGM packets sent.
# TYPE pgm_router_sent_packets_total counter
pgm_router_sent_packets_total{interface=\"lana\",type=\"ncf\"} 7
pgm_router_sent_packets_total{interface=\"lanb\",type=\"ncf\"} 3
pgm_router_sent_packets_total{interface=\"lana\",type=\"nak\"} 11
pgm_router_repair_states 42

pgm_dlr_odd{reason=\"a \\\"quoted\\\", comma\",subtype=\"x\"} 2.9 1700000000000
broken{interface=\"lana\" 5
also_broken 5 6 7
";

    #[test]
    fn sums_over_matching_labels() {
        let name = "pgm_router_sent_packets_total";
        assert_eq!(sum(TEXT, name, &[]), 21);
        assert_eq!(sum(TEXT, name, &[("type", "ncf")]), 10);
        assert_eq!(
            sum(TEXT, name, &[("interface", "lana"), ("type", "ncf")]),
            7
        );
        assert_eq!(sum(TEXT, name, &[("interface", "lan")]), 0);
        assert_eq!(sum(TEXT, "pgm_router_repair_states", &[]), 42);
        assert_eq!(sum(TEXT, "pgm_router_missing", &[]), 0);
        // Labels match whole names and values, not substrings.
        assert_eq!(sum(TEXT, "pgm_dlr_odd", &[("type", "x")]), 0);
        assert_eq!(sum(TEXT, "pgm_dlr_odd", &[("subtype", "x")]), 2);
    }

    #[test]
    fn parses_escapes_timestamps_and_skips_malformed_lines() {
        let all: Vec<Sample<'_>> = samples(TEXT).collect();
        assert_eq!(all.len(), 5, "{all:?}");
        let odd = &all[4];
        assert_eq!(odd.label("reason"), Some("a \"quoted\", comma"));
        assert_eq!(odd.value, 2.9);
        assert_eq!(samples("x +Inf\ny NaN").count(), 2);
        for bad in [
            "{a=\"b\"} 1",
            "x{a=\"b} 1",
            "x{a=b} 1",
            "x{=\"b\"} 1",
            "x",
            "x y",
        ] {
            assert_eq!(samples(bad).count(), 0, "{bad}");
        }
    }
}
