//! Parsers that accept exactly what Linkerd's injector accepts for annotation
//! values: Go's `strconv.ParseBool`, `strconv.ParseUint`, `time.ParseDuration`
//! and Kubernetes' `resource.ParseQuantity`. An annotation Linkerd ignores as
//! invalid must be ignored here too, or the same pod would get a different
//! proxy.

/// `strconv.ParseBool`.
pub(super) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `strconv.ParseUint(s, 10, 64)`: unlike Rust's parser, no `+` sign.
pub(super) fn parse_uint(s: &str) -> Option<u64> {
    if s.starts_with('+') {
        return None;
    }
    s.parse().ok()
}

/// `strconv.ParseFloat(s, 64)` for the decimal forms (Go's hexadecimal
/// floats are not accepted). `None` also for values Go rejects that Rust
/// would take, such as a signed NaN.
pub(super) fn parse_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']);
    if unsigned.is_some_and(|u| u.starts_with(['n', 'N'])) || s.contains('_') {
        return None;
    }
    s.parse().ok()
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// `time.ParseDuration`, in nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Option<i64> {
    const LIMIT: u64 = 1 << 63;
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return None;
        }
        // Whole part: overflow is an error.
        let mut whole: u64 = 0;
        let mut i = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            if whole > LIMIT / 10 {
                return None;
            }
            whole = whole * 10 + u64::from(b[i] - b'0');
            if whole > LIMIT {
                return None;
            }
            i += 1;
        }
        let pre = i > 0;
        // Fraction: digits past u64 precision are dropped, not errors.
        let (mut frac, mut scale, mut post) = (0u64, 1f64, false);
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            let mut overflow = false;
            while i < b.len() && b[i].is_ascii_digit() {
                if !overflow {
                    if frac > (LIMIT - 1) / 10 {
                        overflow = true;
                    } else {
                        let next = frac * 10 + u64::from(b[i] - b'0');
                        if next > LIMIT {
                            overflow = true;
                        } else {
                            frac = next;
                            scale *= 10.0;
                        }
                    }
                }
                i += 1;
            }
            post = i > start;
        }
        if !pre && !post {
            return None;
        }
        // The unit runs to the next digit or dot (both ASCII, so `i` stays
        // on a character boundary).
        let unit_start = i;
        while i < b.len() && !(b[i] == b'.' || b[i].is_ascii_digit()) {
            i += 1;
        }
        let unit: u64 = match &rest[unit_start..i] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[i..];
        if whole > LIMIT / unit {
            return None;
        }
        let mut v = whole * unit;
        if frac > 0 {
            // As Go: float64 keeps fractions of hours nanosecond-accurate.
            v += (frac as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return None;
            }
        }
        total += v;
        if total > LIMIT {
            return None;
        }
    }
    if neg {
        // 1<<63 negated is i64::MIN, which Go accepts.
        return Some((total as i64).wrapping_neg());
    }
    i64::try_from(total).ok()
}

/// `Duration.Seconds()`: whole seconds plus the fraction, as a float.
pub(super) fn seconds(nanos: i64) -> f64 {
    (nanos / NANOS_PER_SEC) as f64 + (nanos % NANOS_PER_SEC) as f64 / 1e9
}

/// A Kubernetes quantity, parsed as `resource.ParseQuantity` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Quantity {
    negative: bool,
    /// Integer and fraction digits, leading zeros of the integer dropped.
    whole: String,
    fraction: String,
    exponent: Exponent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exponent {
    /// Times ten to this power (`m`, `k`, `e3`, ...).
    Decimal(i32),
    /// Times two to this power (`Ki`, `Mi`, ...).
    Binary(u32),
}

/// `resource.ParseQuantity`; `None` where it returns an error.
pub(super) fn parse_quantity(s: &str) -> Option<Quantity> {
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    let mut pos = 0;
    let negative = b[0] == b'-';
    if matches!(b[0], b'-' | b'+') {
        pos = 1;
    }
    while pos < b.len() && b[pos] == b'0' {
        pos += 1;
    }
    let digits = |from: usize| {
        let mut end = from;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        end
    };
    let whole_end = digits(pos);
    let whole = &s[pos..whole_end];
    pos = whole_end;
    let mut fraction = "";
    if pos < b.len() && b[pos] == b'.' {
        let end = digits(pos + 1);
        fraction = &s[pos + 1..end];
        pos = end;
    }
    let has_digits = s[..pos].bytes().any(|c| c.is_ascii_digit());
    // Suffix: letters of the known suffixes, then an optional signed integer.
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    if digits(pos) != b.len() {
        return None;
    }
    let exponent = match &s[suffix_start..] {
        "n" => Exponent::Decimal(-9),
        "u" => Exponent::Decimal(-6),
        "m" => Exponent::Decimal(-3),
        "" => Exponent::Decimal(0),
        "k" => Exponent::Decimal(3),
        "M" => Exponent::Decimal(6),
        "G" => Exponent::Decimal(9),
        "T" => Exponent::Decimal(12),
        "P" => Exponent::Decimal(15),
        "E" => Exponent::Decimal(18),
        "Ki" => Exponent::Binary(10),
        "Mi" => Exponent::Binary(20),
        "Gi" => Exponent::Binary(30),
        "Ti" => Exponent::Binary(40),
        "Pi" => Exponent::Binary(50),
        "Ei" => Exponent::Binary(60),
        other if other.len() > 1 && other.starts_with(['e', 'E']) => {
            // Parsed as int64, then truncated to int32, as Kubernetes does.
            Exponent::Decimal(other[1..].parse::<i64>().ok()? as i32)
        }
        _ => return None,
    };
    // Kubernetes falls back to an arbitrary-precision decimal for scales
    // below nano, and that parser wants at least one digit.
    if let Exponent::Decimal(e) = exponent
        && !has_digits
        && i64::from(e) - (fraction.len() as i64) < -9
    {
        return None;
    }
    Some(Quantity {
        negative,
        whole: whole.to_owned(),
        fraction: fraction.to_owned(),
        exponent,
    })
}

impl Quantity {
    /// The value rounded away from zero to a whole number, if it fits an
    /// `i64` (Linkerd's `ToWholeCPUCores`: `RoundUp(0)` then `AsInt64`).
    pub(super) fn whole_units(&self) -> Option<i64> {
        // All significant digits as one integer, and the power of ten it is
        // scaled by.
        let mut digits: Vec<u8> = self
            .whole
            .bytes()
            .chain(self.fraction.bytes())
            .map(|c| c - b'0')
            .collect();
        let mut exp10 = -(self.fraction.len() as i64);
        match self.exponent {
            Exponent::Decimal(e) => exp10 += i64::from(e),
            Exponent::Binary(e) => {
                for _ in 0..e {
                    double(&mut digits);
                }
            }
        }
        let first = digits.iter().position(|&d| d != 0);
        let Some(first) = first else { return Some(0) };
        let digits = &digits[first..];
        // Split into the integer part and whether anything was cut off.
        let (int_digits, cut): (Vec<u8>, bool) = if exp10 >= 0 {
            if digits.len() as i64 + exp10 > 19 {
                return None;
            }
            let mut v = digits.to_vec();
            v.extend(std::iter::repeat_n(0, exp10 as usize));
            (v, false)
        } else {
            let drop = usize::try_from(-exp10).unwrap_or(usize::MAX);
            let keep = digits.len().saturating_sub(drop);
            let cut = digits[keep..].iter().any(|&d| d != 0);
            (digits[..keep].to_vec(), cut)
        };
        if int_digits.len() > 19 {
            return None;
        }
        let mut value: u64 = 0;
        for d in int_digits {
            value = value.checked_mul(10)?.checked_add(u64::from(d))?;
        }
        if cut {
            value = value.checked_add(1)?;
        }
        let value = i64::try_from(value).ok()?;
        Some(if self.negative { -value } else { value })
    }
}

/// Doubles a big-endian decimal digit string in place.
fn double(digits: &mut Vec<u8>) {
    let mut carry = 0;
    for d in digits.iter_mut().rev() {
        let v = *d * 2 + carry;
        *d = v % 10;
        carry = v / 10;
    }
    if carry > 0 {
        digits.insert(0, carry);
    }
}

/// One entry of a port list: a port, a range, or a container port's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PortRange {
    pub lower: i64,
    pub upper: i64,
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lower == self.upper {
            write!(f, "{}", self.lower)
        } else {
            write!(f, "{}-{}", self.lower, self.upper)
        }
    }
}

/// Linkerd's `ParseContainerOpaquePorts`: comma-separated ports, ranges and
/// container port names; invalid entries are dropped.
pub(super) fn parse_port_list(s: &str, named: &dyn Fn(&str) -> Option<i32>) -> Vec<PortRange> {
    let s = s.strip_suffix(',').unwrap_or(s);
    s.split(',')
        .map(str::trim)
        .filter_map(|entry| match named(entry) {
            Some(port) => Some(PortRange {
                lower: port.into(),
                upper: port.into(),
            }),
            None => parse_port_range(entry),
        })
        .collect()
}

fn parse_port_range(s: &str) -> Option<PortRange> {
    let bounds: Vec<&str> = s.split('-').collect();
    let (lower, upper) = match bounds.as_slice() {
        [one] => (*one, *one),
        [lower, upper] => (*lower, *upper),
        _ => return None,
    };
    let port = |p: &str| p.parse::<i64>().ok().filter(|p| (0..=65535).contains(p));
    let (lower, upper) = (port(lower)?, port(upper)?);
    (upper >= lower).then_some(PortRange { lower, upper })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_does() {
        let ms = 1_000_000;
        for (s, want) in [
            ("0", Some(0)),
            ("-0", Some(0)),
            ("1s", Some(1_000 * ms)),
            ("1.5s", Some(1_500 * ms)),
            (".5s", Some(500 * ms)),
            ("5.s", Some(5_000 * ms)),
            ("1h30m", Some(5_400_000 * ms)),
            ("-2m", Some(-120_000 * ms)),
            ("+100ms", Some(100 * ms)),
            ("3\u{b5}s", Some(3_000)),
            ("3\u{3bc}s", Some(3_000)),
            ("1us", Some(1_000)),
            ("9223372036854775807ns", Some(i64::MAX)),
            ("-9223372036854775808ns", Some(i64::MIN)),
            ("9223372036854775808ns", None),
            ("", None),
            ("1", None),
            ("s", None),
            (".s", None),
            ("1d", None),
            ("1 s", None),
            ("1s ", None),
            ("--1s", None),
            ("\u{e9}", None),
        ] {
            assert_eq!(parse_duration(s), want, "{s:?}");
        }
        assert_eq!(seconds(parse_duration("1.5s").unwrap()), 1.5);
    }

    #[test]
    fn quantities_parse_as_kubernetes_does() {
        for ok in [
            "1", "100m", "1.5", "0", "00", "1Gi", "1.5Mi", "1e3", "1E3", "1e-3", "1E", "+1", "-1",
            ".", "-", "1.", ".5", "1.n", ".e-9", "Ki",
        ] {
            assert!(parse_quantity(ok).is_some(), "{ok:?} should parse");
        }
        for bad in [
            "", "1x", "0x", "1e", "1iM", "1m5", "1 ", " 1", "1KiB", "1e--5", ".e-10", "-e-10",
            "1\u{e9}",
        ] {
            assert!(parse_quantity(bad).is_none(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn quantities_round_up_to_whole_units() {
        for (s, want) in [
            ("100m", Some(1)),
            ("1", Some(1)),
            ("1500m", Some(2)),
            ("2", Some(2)),
            ("0", Some(0)),
            ("0.0001", Some(1)),
            ("-1500m", Some(-2)),
            ("1k", Some(1000)),
            ("1Ki", Some(1024)),
            ("1.5Ki", Some(1536)),
            ("0.001Ki", Some(2)),
            ("1e3", Some(1000)),
            ("1e-30", Some(1)),
            ("9223372036854775807", Some(i64::MAX)),
            ("9223372036854775808", None),
            ("1e19", None),
            ("1Ei", Some(1 << 60)),
            ("8Ei", None),
        ] {
            assert_eq!(
                parse_quantity(s).and_then(|q| q.whole_units()),
                want,
                "{s:?}"
            );
        }
    }

    #[test]
    fn bools_floats_and_uints_follow_go() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("F"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_uint("300"), Some(300));
        assert_eq!(parse_uint("+300"), None);
        assert_eq!(parse_uint("-1"), None);
        assert_eq!(parse_float("0.10"), Some(0.1));
        assert_eq!(parse_float("1_0"), None);
        assert_eq!(parse_float("+NaN"), None);
    }

    #[test]
    fn port_lists_resolve_names_and_drop_invalid_entries() {
        let named = |name: &str| (name == "db").then_some(3306);
        let ports: Vec<String> = parse_port_list("db, 8080,9000-9002,x,70000,5-4,+25,", &named)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ports, ["3306", "8080", "9000-9002", "25"]);
    }
}
