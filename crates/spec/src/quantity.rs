//! Kubernetes resource quantities (`500m`, `4`, `16Gi`, `1.5G`) as the integers the engine uses:
//! CPU in millicores, memory in bytes. Shared by the operator (requests, limits, metrics) and the
//! simulator (scenario files), so both read a quantity the same way.

/// Why a quantity string was refused, in words that say what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind} quantity: {why}")]
pub struct QuantityError {
    pub value: String,
    pub kind: &'static str,
    pub why: String,
}

/// Splits `"1.5Gi"` into its number and suffix.
fn split(s: &str) -> (&str, &str) {
    let at = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    s.split_at(at)
}

fn scale(suffix: &str) -> Option<f64> {
    Some(match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return None,
    })
}

/// Parses a non-negative quantity into base units (cores or bytes) as f64.
fn parse_base(s: &str, kind: &'static str) -> Result<f64, QuantityError> {
    let err = |why: &str| QuantityError { value: s.to_string(), kind, why: why.to_string() };
    let t = s.trim();
    if t.is_empty() {
        return Err(err("it is empty"));
    }
    let (num, suffix) = split(t);
    // Exponent form (1e3) is legal in Kubernetes; handle it before suffixes.
    let (num, suffix) = match suffix.strip_prefix(['e', 'E']) {
        Some(exp) if exp.parse::<i32>().is_ok() => {
            let v: f64 = num.parse().map_err(|_| err("the number is malformed"))?;
            return check(v * 10f64.powi(exp.parse::<i32>().unwrap_or(0)), &err);
        }
        _ => (num, suffix),
    };
    let v: f64 = num.parse().map_err(|_| err("the number is malformed; use e.g. 500m, 2, 4Gi"))?;
    let m = scale(suffix).ok_or_else(|| err("unknown suffix; use m, k, M, G, T, Ki, Mi, Gi, Ti"))?;
    check(v * m, &err)
}

fn check(v: f64, err: &dyn Fn(&str) -> QuantityError) -> Result<f64, QuantityError> {
    if !v.is_finite() {
        return Err(err("it is not finite"));
    }
    if v < 0.0 {
        return Err(err("it is negative; quantities must be zero or more"));
    }
    Ok(v)
}

/// CPU quantity to millicores (`"500m"` -> 500, `"2"` -> 2000), rounded up as Kubernetes does.
pub fn cpu_millis(s: &str) -> Result<u64, QuantityError> {
    parse_base(s, "CPU").map(|cores| (cores * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

/// Memory quantity to bytes (`"4Gi"` -> 4294967296), rounded up.
pub fn memory_bytes(s: &str) -> Result<u64, QuantityError> {
    parse_base(s, "memory").map(|b| (b - 1e-9).ceil().max(0.0) as u64)
}

/// Millicores as a Kubernetes quantity (`1500` -> `"1500m"`, `2000` -> `"2"`).
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) { format!("{}", millis / 1000) } else { format!("{millis}m") }
}

/// Bytes as the largest exact binary quantity (`4294967296` -> `"4Gi"`).
pub fn format_memory(bytes: u64) -> String {
    for (suffix, unit) in [("Ti", 1u64 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Bytes in a short human form for tables (`"3.5Gi"`).
pub fn human_bytes(bytes: f64) -> String {
    let gib = bytes / (1u64 << 30) as f64;
    if gib >= 1.0 { format!("{gib:.1}Gi") } else { format!("{:.0}Mi", bytes / (1u64 << 20) as f64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu() {
        assert_eq!(cpu_millis("500m").unwrap(), 500);
        assert_eq!(cpu_millis("2").unwrap(), 2000);
        assert_eq!(cpu_millis("0.25").unwrap(), 250);
        assert_eq!(cpu_millis("1e3").unwrap(), 1_000_000);
        assert_eq!(cpu_millis("100u").unwrap(), 1);
    }

    #[test]
    fn parses_memory() {
        assert_eq!(memory_bytes("4Gi").unwrap(), 4 << 30);
        assert_eq!(memory_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(memory_bytes("512Mi").unwrap(), 512 << 20);
        assert_eq!(memory_bytes("1024").unwrap(), 1024);
    }

    #[test]
    fn refuses_bad_quantities_in_words() {
        let e = cpu_millis("-4").unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
        let e = memory_bytes("4Gb").unwrap_err();
        assert!(e.to_string().contains("unknown suffix"), "{e}");
        assert!(memory_bytes("").is_err());
        assert!(cpu_millis("abc").is_err());
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_cpu(1500), "1500m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_memory(4 << 30), "4Gi");
        assert_eq!(memory_bytes(&format_memory(768 << 20)).unwrap(), 768 << 20);
    }
}
