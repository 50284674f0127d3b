//! YAML for readers that speak YAML 1.1, as the chart's `toYaml` writes it.
//!
//! Linkerd's Go code reads `linkerd-config` with a YAML 1.1 parser, where
//! `off`, `yes`, `n` or `~` unquoted are booleans or null: the chart's
//! `proxy.logHTTPHeaders: "off"` written plain would be read as `false` and
//! fail to decode into its string field. `yaml_serde` writes YAML 1.2, which
//! quotes none of those. So this writer quotes every string that is not
//! plainly a string in both (block style, keys sorted, sequences in maps not
//! indented, multi-line strings as literal blocks, as `toYaml` does).

use serde_json::Value;
use std::fmt::Write;

/// The document for `value`, an object.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    let mut keys: Vec<_> = map.keys().collect();
    keys.sort();
    for key in keys {
        let pad = " ".repeat(indent);
        let _ = write!(out, "{pad}{}:", string(key, indent));
        write_value(out, &map[key], indent, true);
    }
}

/// A value after `key:` (or `- `): inline if scalar or empty, else nested.
fn write_value(out: &mut String, value: &Value, indent: usize, in_map: bool) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            // `toYaml` does not indent a sequence under its key.
            let at = if in_map { indent } else { indent + 2 };
            write_seq(out, items, at);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent));
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key shares the dash's line.
                let mut nested = String::new();
                write_map(&mut nested, map, indent + 2);
                let _ = write!(out, "{pad}- {}", &nested[indent + 2..]);
            }
            other => {
                let _ = write!(out, "{pad}-");
                write_value(out, other, indent, false);
            }
        }
    }
}

fn scalar(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s, indent),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string as a plain scalar where both YAML versions read it as that
/// string, else a literal block (several lines) or single-quoted.
fn string(s: &str, indent: usize) -> String {
    if s.contains('\n') && !s.contains('\r') && !s.starts_with(' ') && !s.ends_with("\n\n") {
        let chomp = if s.ends_with('\n') { "" } else { "-" };
        let pad = " ".repeat(indent + 2);
        let body: Vec<String> = s
            .trim_end_matches('\n')
            .split('\n')
            .map(|line| {
                if line.is_empty() {
                    String::new()
                } else {
                    format!("{pad}{line}")
                }
            })
            .collect();
        return format!("|{chomp}\n{}", body.join("\n"));
    }
    if plain(s) {
        s.to_owned()
    } else if s.chars().any(char::is_control) {
        // Double-quoted, with JSON's escapes (valid in YAML).
        serde_json::to_string(s).expect("a string serializes")
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// Whether `s` reads as itself, a string, unquoted in YAML 1.1 and 1.2.
fn plain(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", ".inf", "-.inf", "+.inf",
        ".nan",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    let safe_chars = s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '_' | '.' | '/' | '-' | ',' | '=' | '$' | '(' | ')' | '%' | '+' | '@'
            )
    });
    let numeric = s.chars().all(|c| {
        c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '+' | 'e' | 'E' | 'x' | 'X' | 'o' | 'b')
    }) && s.chars().any(|c| c.is_ascii_digit());
    safe_chars
        && !numeric
        && (first.is_ascii_alphanumeric() || matches!(first, '_' | '.' | '/' | '$' | '('))
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_yaml_1_1_reads_otherwise_are_quoted() {
        let value = json!({
            "logHTTPHeaders": "off", "a": "yes", "b": "n", "c": "~", "d": "", "e": "1.5",
            "f": "0x10", "g": "::/0", "h": "-x", "i": "it's", "j": "a: b", "k": "10s",
            "l": "warn,linkerd=info", "m": "$(_pod_ip)", "n": "25%", "o": "kubernetes.io/os",
        });
        let text = to_string(&value);
        for quoted in [
            "'off'", "'yes'", "'n'", "'~'", "''", "'1.5'", "'0x10'", "'::/0'", "'-x'", "'it''s'",
            "'a: b'",
        ] {
            assert!(text.contains(quoted), "{quoted} in\n{text}");
        }
        for plain in [
            "10s",
            "warn,linkerd=info",
            "$(_pod_ip)",
            "25%",
            "kubernetes.io/os",
        ] {
            assert!(text.contains(&format!(": {plain}\n")), "{plain} in\n{text}");
        }
        // YAML 1.2 reads it back as written.
        let back: Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn nesting_lists_and_blocks_read_back_as_written() {
        let value = json!({
            "pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "selector": "matchNames:\n  - {{ .Release.Namespace }}\n  - linkerd-viz\n",
            "networks": ["0.0.0.0/0", "::/0"],
            "expressions": [{"key": "a", "operator": "NotIn", "values": ["x", "y"]}, {"key": "b"}],
            "empty": {}, "none": [], "null": null, "n": -1, "t": true,
            "deep": {"x": {"y": {"z": "off"}}},
            "gaps": "a\n\n", "tab": "a\tb",
        });
        let text = to_string(&value);
        let back: Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(back, value, "\n{text}");
        assert!(
            text.contains("networks:\n- 0.0.0.0/0\n- '::/0'\n"),
            "\n{text}"
        );
        assert!(
            text.contains("pem: |-\n  -----BEGIN CERTIFICATE-----\n"),
            "\n{text}"
        );
        assert!(
            text.contains("expressions:\n- key: a\n  operator: NotIn\n  values:\n  - x\n"),
            "\n{text}"
        );
    }
}
