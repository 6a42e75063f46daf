//! The one builder from a HostPool-shaped spec to the engine's [`PoolSettings`], used by the HostPool CRD
//! (`spec.*`) and by scenario files (`pool.*`), so that both accept and refuse the same values. Every
//! problem is collected, each naming its field and what is allowed.

use kubedrs_engine::{Automation, Concurrency, CpuBaselinePolicy, PoolSettings};

/// One problem in a spec: the field (`spec.concurrency.perPool`) and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// A concurrency limit as written: a number, or unlimited (`None`; a HostPool writes `0` for inbound).
pub type Limit = Option<u32>;

/// The pool fields as the user wrote them; `None` takes the documented default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolFields {
    pub automation: Option<Automation>,
    pub migration_threshold: Option<i64>,
    /// Seconds (parsed with [`crate::duration`]).
    pub interval_secs: Option<f64>,
    pub per_pool: Option<Limit>,
    pub per_node_outbound: Option<Limit>,
    pub per_node_inbound: Option<Limit>,
    /// `Auto`, `Off` or a CPU model name.
    pub cpu_baseline: Option<String>,
    pub max_migrations_per_pass: Option<i64>,
    pub max_moves_per_vm_per_day: Option<i64>,
    /// Seconds.
    pub cooldown_secs: Option<f64>,
}

/// The settings and the balancing period of a valid pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub settings: PoolSettings,
    pub interval_secs: u64,
}

/// Default balancing period.
pub const DEFAULT_INTERVAL_SECS: u64 = 300;
/// Shortest and longest balancing period.
pub const INTERVAL_RANGE_SECS: (u64, u64) = (10, 24 * 3600);
/// `cpuBaseline` values that are not model names.
pub const CPU_BASELINE_AUTO: &str = "Auto";
pub const CPU_BASELINE_OFF: &str = "Off";

/// Checks `f` and builds the engine's settings for pool `name`. `prefix` is the path of the fields in the
/// user's document (`spec` for a HostPool, `pool` for a scenario file).
pub fn build(name: &str, f: &PoolFields, prefix: &str) -> Result<Built, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| errors.push(FieldError::new(format!("{prefix}.{field}"), message));
    let mut s = PoolSettings { name: name.to_string(), ..PoolSettings::default() };
    if let Some(a) = f.automation {
        s.automation = a;
    }
    match f.migration_threshold {
        Some(t) if !(1..=5).contains(&t) => err(
            "migrationThreshold",
            format!("{t} is out of range: use 1 (mandatory moves only) to 5 (most aggressive)"),
        ),
        Some(t) => s.migration_threshold = t as u8,
        None => {}
    }
    let mut interval_secs = DEFAULT_INTERVAL_SECS;
    if let Some(i) = f.interval_secs {
        let (lo, hi) = INTERVAL_RANGE_SECS;
        if i < lo as f64 {
            err("interval", format!("{i}s is shorter than the minimum {lo}s"));
        } else if i > hi as f64 {
            err("interval", format!("{i}s is longer than the maximum 24h"));
        } else {
            interval_secs = i.round() as u64;
        }
    }
    let d = Concurrency::default();
    let mut at_least_one = |field: &str, l: Option<Limit>, default: u32| match l {
        None => default,
        Some(Some(n)) if n >= 1 => n,
        Some(_) => {
            err(field, "must be a positive integer (only perNodeInbound may be unlimited)".into());
            default
        }
    };
    s.concurrency.per_pool = at_least_one("concurrency.perPool", f.per_pool, d.per_pool);
    s.concurrency.per_node_outbound =
        at_least_one("concurrency.perNodeOutbound", f.per_node_outbound, d.per_node_outbound);
    s.concurrency.per_node_inbound = match f.per_node_inbound {
        None => d.per_node_inbound,
        Some(l) => l.filter(|n| *n > 0),
    };
    if let Some(b) = &f.cpu_baseline {
        s.cpu_baseline = match b.trim() {
            CPU_BASELINE_AUTO => CpuBaselinePolicy::Auto,
            CPU_BASELINE_OFF => CpuBaselinePolicy::Off,
            "" => {
                err("cpuBaseline", "is empty: use Auto, Off or a KubeVirt CPU model name".into());
                CpuBaselinePolicy::Auto
            }
            "host-model" | "host-passthrough" => {
                err("cpuBaseline", format!("{b:?} depends on the node: use Auto, Off or a named CPU model"));
                CpuBaselinePolicy::Auto
            }
            model => CpuBaselinePolicy::Model(model.to_string()),
        };
    }
    match f.max_migrations_per_pass {
        Some(n) if !(0..=1000).contains(&n) => {
            err("maxMigrationsPerPass", format!("{n} is out of range: use 0 (no balancing moves) to 1000"))
        }
        Some(n) => s.max_migrations_per_pass = n as u32,
        None => {}
    }
    match f.max_moves_per_vm_per_day {
        Some(n) if !(1..=12).contains(&n) => err(
            "maxMovesPerVmPerDay",
            format!("{n} is out of range: use 1 to 12 (KubeVirt alerts above 12 migrations a day)"),
        ),
        Some(n) => s.max_moves_per_vm_per_day = n as u32,
        None => {}
    }
    if let Some(c) = f.cooldown_secs {
        s.cooldown_secs = c.round() as u64;
    }
    if errors.is_empty() { Ok(Built { settings: s, interval_secs }) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_written_gives_the_documented_defaults() {
        let b = build("prod", &PoolFields::default(), "spec").unwrap();
        assert_eq!(b.settings, PoolSettings { name: "prod".into(), ..PoolSettings::default() });
        assert_eq!(b.interval_secs, 300);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let f = PoolFields {
            migration_threshold: Some(7),
            interval_secs: Some(5.0),
            per_pool: Some(Some(0)),
            per_node_outbound: Some(None),
            cpu_baseline: Some("host-model".into()),
            max_migrations_per_pass: Some(-1),
            max_moves_per_vm_per_day: Some(13),
            ..PoolFields::default()
        };
        let errors = build("prod", &f, "pool").unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "pool.migrationThreshold",
                "pool.interval",
                "pool.concurrency.perPool",
                "pool.concurrency.perNodeOutbound",
                "pool.cpuBaseline",
                "pool.maxMigrationsPerPass",
                "pool.maxMovesPerVmPerDay"
            ]
        );
        assert!(errors[0].message.contains("use 1"), "{}", errors[0]);
    }

    #[test]
    fn inbound_may_be_unlimited_and_zero_means_unlimited() {
        for l in [None, Some(0)] {
            let f = PoolFields { per_node_inbound: Some(l), ..PoolFields::default() };
            assert_eq!(build("p", &f, "spec").unwrap().settings.concurrency.per_node_inbound, None);
        }
        let f = PoolFields { per_node_inbound: Some(Some(3)), ..PoolFields::default() };
        assert_eq!(build("p", &f, "spec").unwrap().settings.concurrency.per_node_inbound, Some(3));
    }
}
