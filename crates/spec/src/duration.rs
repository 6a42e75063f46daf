//! The one duration grammar of kubedrs: `90s`, `5m`, `1h30m`, `1.5h`, `500ms`, `2d`, `02:15`
//! (hours:minutes[:seconds]) or a bare number of seconds. The HostPool schema admits its Go-style subset
//! (a number and a unit, `ms` to `h`); scenario files admit all of it.

use std::time::Duration;

/// Seconds, or why the text is not a duration (saying what is allowed).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let bad = || format!("{t:?} is not a duration: use e.g. 30s, 5m, 1h30m, 2d, 02:15 or a number of seconds");
    if t.is_empty() {
        return Err(bad());
    }
    if t.starts_with('-') {
        return Err(format!("{t:?} is negative: durations are 0 or more"));
    }
    if let Ok(v) = t.parse::<f64>() {
        return if v.is_finite() && v >= 0.0 { Ok(v) } else { Err(bad()) };
    }
    if t.contains(':') {
        let nums: Option<Vec<u64>> = t.split(':').map(|p| p.parse::<u64>().ok()).collect();
        return match nums.as_deref() {
            Some([h, m]) if *m < 60 => Ok((h * 3600 + m * 60) as f64),
            Some([h, m, s]) if *m < 60 && *s < 60 => Ok((h * 3600 + m * 60 + s) as f64),
            _ => Err(bad()),
        };
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if n == 0 {
            return Err(bad());
        }
        let (num, after) = rest.split_at(n);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let u = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(u);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = next;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(total)
}

/// [`parse_secs`] as a [`Duration`].
pub fn parse(s: &str) -> Result<Duration, String> {
    parse_secs(s).map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads() {
        for (s, secs) in [
            ("90s", 90.0),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("2d", 172_800.0),
            ("02:15", 8100.0),
            ("01:00:30", 3630.0),
            ("30", 30.0),
            (" 10s ", 10.0),
        ] {
            assert_eq!(parse_secs(s), Ok(secs), "{s}");
        }
    }

    #[test]
    fn bad_ones_say_what_is_allowed() {
        for s in ["", "5x", "m5", "1:75", "s", "1e400"] {
            let e = parse_secs(s).unwrap_err();
            assert!(e.contains("not a duration"), "{s}: {e}");
        }
        assert!(parse_secs("-5m").unwrap_err().contains("negative"));
    }
}
