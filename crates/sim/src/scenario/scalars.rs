//! Scalars read with their own checks (quantities, durations, fractions, shares, limits), so that
//! serde_yaml's error carries their line.

use kubedrs_engine::Shares;
use kubedrs_spec::quantity;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

// Scalars read with their own checks (errors carry serde_yaml's location)

/// Reads a scalar, whether YAML typed it as a number or a string (`cpu: 4`, `cpu: 500m`), and parses its text
/// inside the visitor, so that serde_yaml attaches the scalar's own line and field path to a parse error.
pub(crate) struct ScalarVisitor<T>(fn(&str) -> Result<T, String>);

impl<T> Visitor<'_> for ScalarVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

pub(crate) fn scalar<'de, D: Deserializer<'de>, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<T, D::Error> {
    d.deserialize_any(ScalarVisitor(parse))
}

macro_rules! scalar_type {
    ($(#[$m:meta])* $name:ident($inner:ty), $parse:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $name(pub $inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                scalar(d, $parse).map($name)
            }
        }
    };
}

scalar_type!(
    /// CPU quantity in millicores (`4`, `500m`).
    Cpu(u64), |s| quantity::cpu_millis(s).map_err(|e| e.to_string())
);
scalar_type!(
    /// Memory quantity in bytes (`8Gi`).
    Mem(u64), |s| quantity::memory_bytes(s).map_err(|e| e.to_string())
);
scalar_type!(
    /// Duration in seconds (`90s`, `5m`, `1h30m`, `2d`, `500ms`, `14:30`, or a number of seconds).
    Dur(f64), parse_duration
);
scalar_type!(
    /// A fraction 0..=1, written `0.4` or `40%`.
    Frac(f64), parse_fraction
);
scalar_type!(
    /// `low`, `normal`, `high` or a positive integer.
    SharesValue(Shares), |s| s.parse::<Shares>()
);
scalar_type!(
    /// A positive integer, or `unlimited`.
    Limit(Option<u32>), |s| match s.trim() {
        "unlimited" => Ok(None),
        t => t.parse::<u32>().ok().filter(|n| *n > 0).map(Some)
            .ok_or_else(|| format!("{t:?} is not a limit: use a positive integer or `unlimited`")),
    }
);

/// The duration grammar of kubedrs ([`kubedrs_spec::duration::parse_secs`]).
pub fn parse_duration(s: &str) -> Result<f64, String> {
    kubedrs_spec::duration::parse_secs(s)
}

pub(crate) fn parse_fraction(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(p) => (p.trim(), 0.01),
        None => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1.0).contains(&(v * scale)) => Ok(v * scale),
        Ok(_) => Err(format!("{t:?} is out of range: use 0..1 or 0%..100%")),
        Err(_) => Err(format!("{t:?} is not a fraction: use e.g. 0.4 or 40%")),
    }
}
