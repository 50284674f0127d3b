//! A reader for the Prometheus text exposition format, as Linkerd's proxy
//! serves it on `/metrics`: just samples (name, labels, value); comments,
//! types and timestamps are skipped. Small on purpose: the proxies' output
//! is plain, and the crates that parse it pull in far more than this needs.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Why a text could not be read, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Every sample of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            !l.is_empty() && !l.starts_with('#')
        })
        .map(|(i, l)| {
            sample(l.trim()).map_err(|message| ParseError {
                line: i + 1,
                message,
            })
        })
        .collect()
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        rest = read_labels(body, &mut labels)?;
    }
    // The value, then an optional timestamp Keelson does not need.
    let value = rest
        .split_whitespace()
        .next()
        .ok_or("a sample needs a value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("{v:?} is not a number"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads `name="value",...}` and returns what follows the brace.
fn read_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let (key, after) = s.split_once('=').ok_or("a label needs a value")?;
        let key = key.trim();
        let mut chars = after
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("the value of label {key} is not quoted"))?
            .char_indices();
        let quoted = after.trim_start();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {key} ends inside an escape")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("the value of label {key} is not closed")),
            }
        };
        labels.insert(key.to_owned(), value);
        // `end` indexes the text after the opening quote.
        s = quoted[1 + end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_proxys_authz_counters() {
        let text = r#"# HELP inbound_http_authz_allow_total The total number of inbound HTTP requests that were authorized
# TYPE inbound_http_authz_allow_total counter
inbound_http_authz_allow_total{target_addr="10.1.0.5:8080",target_ip="10.1.0.5",target_port="8080",tls="true",client_id="web.apps.serviceaccount.identity.linkerd.cluster.local",srv_group="policy.linkerd.io",srv_kind="server",srv_name="api",srv_port="8080",route_group="",route_kind="default",route_name="default",authz_group="",authz_kind="default",authz_name="audit"} 7
inbound_tcp_authz_allow_total{tls="no_identity",no_tls_reason="no_tls_from_remote",authz_name="audit"} 2 1700000000000

process_start_time_seconds 1.7e9
"#;
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "inbound_http_authz_allow_total");
        assert_eq!(samples[0].value, 7.0);
        assert_eq!(
            samples[0].labels["client_id"],
            "web.apps.serviceaccount.identity.linkerd.cluster.local"
        );
        assert_eq!(samples[0].labels["route_group"], "");
        assert_eq!(samples[1].labels["no_tls_reason"], "no_tls_from_remote");
        assert_eq!(samples[1].value, 2.0);
        assert_eq!(samples[2].value, 1.7e9);
        assert!(samples[2].labels.is_empty());
    }

    #[test]
    fn escapes_spaces_and_special_values() {
        let samples = parse("m{a=\"x\\\"y\\\\z\\n\", b = \"1,2}\" ,} +Inf\nn NaN\no{} -3").unwrap();
        assert_eq!(samples[0].labels["a"], "x\"y\\z\n");
        assert_eq!(samples[0].labels["b"], "1,2}");
        assert!(samples[0].value.is_infinite());
        assert!(samples[1].value.is_nan());
        assert_eq!(samples[2].value, -3.0);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        for (text, line) in [
            ("ok 1\nbad{a=1} 2", 2),
            ("m{a=\"open} 1", 1),
            ("# c\nm{a=\"b\"}", 2),
            ("m two", 1),
            ("1bad-name 1", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
        }
    }
}
