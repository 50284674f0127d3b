//! A Kubernetes `metav1.Duration` (Go's `time.Duration` text, `1h30m`), kept
//! as the text the user wrote and parsed on use with checked arithmetic.
//!
//! Why not `kube::core::Duration`: its parser multiplies without checking,
//! so `99999999999999999h` panics, and it drops the sign of `-1s`. A value
//! that panics while a watch decodes it takes the whole operator down on
//! every start. Here decoding accepts any string; the validator and the
//! reconcilers call [`Duration::positive`], which refuses what Go refuses
//! (and what does not fit in Go's `int64` nanoseconds) and names the reason,
//! so a bad stored object is reported on that object instead.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::time;

/// A duration as Kubernetes writes it (`10s`, `1h30m`, `1.5h`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(String);

/// Why a duration's text is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration such as 90s, 10m or 1h30m")]
    Syntax(String),
    #[error("{text:?} has unknown unit {unit:?} (use ns, us, ms, s, m or h)")]
    Unit { text: String, unit: String },
    #[error("{0:?} is too long: a duration is at most 2562047h (292 years)")]
    Overflow(String),
    #[error("must be a positive duration, not {0:?}")]
    NotPositive(String),
    #[error("must not be negative, not {0:?}")]
    Negative(String),
}

/// Longest text accepted: no real duration needs more, and a bound keeps a
/// denial that quotes the value short.
const MAX_LEN: usize = 64;

impl Duration {
    /// The text as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Signed nanoseconds, exactly as Go's `time.ParseDuration` reads the
    /// text, or why Go would refuse it.
    pub fn nanos(&self) -> Result<i64, DurationError> {
        parse(&self.0)
    }

    /// The duration, which must be longer than zero.
    pub fn positive(&self) -> Result<time::Duration, DurationError> {
        match self.nanos()? {
            n if n > 0 => Ok(time::Duration::from_nanos(n.unsigned_abs())),
            _ => Err(DurationError::NotPositive(self.0.clone())),
        }
    }

    /// The duration, which may be zero but not negative.
    pub fn non_negative(&self) -> Result<time::Duration, DurationError> {
        match self.nanos()? {
            n if n >= 0 => Ok(time::Duration::from_nanos(n.unsigned_abs())),
            _ => Err(DurationError::Negative(self.0.clone())),
        }
    }

    /// The duration, or zero when [`Self::non_negative`] refuses it. For code
    /// that runs only on specs the validator's checks passed (reconcilers
    /// check the same fields first and stop on a bad one).
    pub fn or_zero(&self) -> time::Duration {
        self.non_negative().unwrap_or_default()
    }
}

impl From<time::Duration> for Duration {
    /// Written as `kube` and Kubernetes' defaults write it (`600s`, `1.5s`).
    fn from(d: time::Duration) -> Self {
        Self(format!("{d:?}"))
    }
}

impl From<&str> for Duration {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // The API server itself refuses what is not a duration, or is
        // negative (no Keelson field takes one); what the pattern cannot
        // say (zero, overflow) the validator and reconcilers refuse.
        schemars::json_schema!({
            "type": "string",
            "maxLength": MAX_LEN,
            "pattern": r"^\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$",
        })
    }
}

const NANOS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{00b5}s", 1_000),
    ("\u{03bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's `time.ParseDuration` (go/src/time/format.go), with its overflow
/// rules: the total must fit in an `int64` of nanoseconds.
fn parse(text: &str) -> Result<i64, DurationError> {
    let syntax = || DurationError::Syntax(truncated(text));
    let overflow = || DurationError::Overflow(truncated(text));
    if text.len() > MAX_LEN {
        return Err(overflow());
    }
    let (negative, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(syntax());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let int_len = digits(s);
        let (int, rest) = s.split_at(int_len);
        let mut value: u64 = 0;
        for b in int.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .filter(|v| *v <= LIMIT)
                .ok_or_else(overflow)?;
        }
        s = rest;
        // The fraction keeps the digits that fit; later ones cannot change
        // the nanoseconds.
        let (mut fraction, mut scale, mut frac_len) = (0u64, 1f64, 0);
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = digits(rest);
            let mut full = false;
            for b in rest[..frac_len].bytes() {
                if full {
                    continue;
                }
                match fraction
                    .checked_mul(10)
                    .and_then(|f| f.checked_add(u64::from(b - b'0')))
                    .filter(|f| *f <= LIMIT)
                {
                    Some(f) => {
                        fraction = f;
                        scale *= 10.0;
                    }
                    None => full = true,
                }
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(syntax());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(syntax());
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let Some(&(_, per_unit)) = NANOS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::Unit {
                text: truncated(text),
                unit: unit.chars().take(8).collect(),
            });
        };
        if value > LIMIT / per_unit {
            return Err(overflow());
        }
        value *= per_unit;
        if fraction > 0 {
            // As Go: float64(f) * (float64(unit) / scale), truncated.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let part = (fraction as f64 * (per_unit as f64 / scale)) as u64;
            value = value
                .checked_add(part)
                .filter(|v| *v <= LIMIT)
                .ok_or_else(overflow)?;
        }
        total = total
            .checked_add(value)
            .filter(|t| *t <= LIMIT)
            .ok_or_else(overflow)?;
    }
    if negative {
        // -2^63 fits; 0 - total cannot underflow below it.
        Ok(0i64.wrapping_sub_unsigned(total))
    } else {
        i64::try_from(total).map_err(|_| overflow())
    }
}

/// A value quoted in a message, cut short: messages echo input back.
fn truncated(s: &str) -> String {
    if s.len() <= MAX_LEN {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(MAX_LEN).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn nanos(s: &str) -> Result<i64, DurationError> {
        Duration::from(s).nanos()
    }

    /// Cases from Go's own table (time/time_test.go, parseDurationTests).
    #[test]
    fn parses_as_go_does() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * SECOND),
            ("30s", 30 * SECOND),
            ("1478s", 1478 * SECOND),
            ("-5s", -5 * SECOND),
            ("+5s", 5 * SECOND),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * SECOND),
            ("5.6s", 5 * SECOND + 600_000_000),
            ("5.s", 5 * SECOND),
            (".5s", 500_000_000),
            ("1.0s", SECOND),
            ("1.004s", SECOND + 4_000_000),
            ("100.00100s", 100 * SECOND + 1_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12µs", 12_000),
            ("12μs", 12_000),
            ("13ms", 13_000_000),
            ("15m", 15 * 60 * SECOND),
            ("16h", 16 * 3600 * SECOND),
            ("3h30m", (3 * 3600 + 30 * 60) * SECOND),
            ("10.5s4m", 4 * 60 * SECOND + 10 * SECOND + 500_000_000),
            ("-2m3.4s", -(2 * 60 * SECOND + 3 * SECOND + 400_000_000)),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * 60 * SECOND),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("0.100000000000000000000h", 6 * 60 * SECOND),
            (
                "0.830103483285477580700h",
                49 * 60 * SECOND + 48_372_539_827,
            ),
        ];
        for (text, want) in ok {
            assert_eq!(nanos(text), Ok(*want), "{text}");
        }
        for bad in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{85}\u{85}",
            "1ss",
        ] {
            assert!(nanos(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        for text in [
            "9223372036854775808ns",
            "9223372036854775.808us",
            "2562048h",
            "99999999999999999h",
            "99999999999999999999999999999999s",
            "2562047h48m",
            "1h9223372036854775807ns",
        ] {
            assert_eq!(
                nanos(text),
                Err(DurationError::Overflow(text.into())),
                "{text}"
            );
        }
        // The largest whole-hour duration still fits.
        assert!(nanos("2562047h").is_ok());
        let huge = "9".repeat(100_000) + "s";
        assert!(matches!(nanos(&huge), Err(DurationError::Overflow(m)) if m.len() < 80));
    }

    #[test]
    fn positive_refuses_zero_and_negative_and_keeps_the_sign() {
        assert_eq!(
            Duration::from("90s").positive(),
            Ok(time::Duration::from_secs(90))
        );
        for text in ["0", "0s", "-1s", "-10s"] {
            assert_eq!(
                Duration::from(text).positive(),
                Err(DurationError::NotPositive(text.into())),
                "{text}"
            );
        }
        assert_eq!(Duration::from("-1s").or_zero(), time::Duration::ZERO);
        assert_eq!(
            Duration::from("0s").non_negative(),
            Ok(time::Duration::ZERO)
        );
        assert_eq!(
            Duration::from("-1s").non_negative(),
            Err(DurationError::Negative("-1s".into()))
        );
        assert!(matches!(
            Duration::from("banana").positive(),
            Err(DurationError::Unit { .. } | DurationError::Syntax(_))
        ));
    }

    #[test]
    fn writes_std_durations_as_kubernetes_defaults_do_and_reads_them_back() {
        for secs in [10, 600, 86_400, 31_536_000] {
            let d = Duration::from(time::Duration::from_secs(secs));
            assert_eq!(d.as_str(), format!("{secs}s"));
            assert_eq!(d.positive(), Ok(time::Duration::from_secs(secs)));
        }
        let d = Duration::from(time::Duration::from_millis(1500));
        assert_eq!(d.positive(), Ok(time::Duration::from_millis(1500)));
    }

    #[test]
    fn any_string_decodes_so_a_stored_object_can_be_reported() {
        let d: Duration = serde_json::from_str(r#""99999999999999999h""#).unwrap();
        assert!(d.positive().is_err());
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#""99999999999999999h""#
        );
    }

    #[test]
    fn the_schema_pattern_accepts_what_go_accepts_without_a_minus() {
        let schema = serde_json::to_value(schemars::schema_for!(Duration)).unwrap();
        // The API server matches patterns with Go's RE2; Rust's regex has the
        // same syntax and semantics for this one.
        let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        for ok in [
            "0", "10s", "1h30m", "1.5h", ".5s", "5.s", "12µs", "+5s", "2562047h",
        ] {
            assert!(pattern.is_match(ok), "{ok}");
            assert!(parse(ok).is_ok(), "{ok}");
        }
        for bad in ["-1s", "banana", "10", "1d", "", "s", ".s", "1h-5m"] {
            assert!(!pattern.is_match(bad), "{bad}");
        }
    }
}
