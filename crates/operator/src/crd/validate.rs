//! What the schema cannot check: a spec becomes the engine's settings and rules ([`PoolConfig`]), or every
//! problem with its field ([`InvalidSpec`]).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use kubedrs_engine::{
    Automation as EngineAutomation, Enforcement as EngineEnforcement, PoolSettings, Rule as EngineRule, RuleKind,
    Selector, SelectorOperator, SelectorRequirement,
};
use kubedrs_spec::pool::PoolFields;

use super::*;

/// One problem in a HostPool spec: the field (`spec.rules[1].nodeSelector`) and what is allowed.
pub use kubedrs_spec::pool::FieldError;

/// A HostPool spec kubedrs refuses; every problem found, in field order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HostPool spec: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct InvalidSpec {
    pub errors: Vec<FieldError>,
}

/// A validated HostPool spec, in the engine's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Settings for [`kubedrs_engine::Snapshot::pool`].
    pub settings: PoolSettings,
    /// Which nodes belong to the pool.
    pub node_selector: Selector,
    pub rules: Vec<EngineRule>,
    pub interval: Duration,
    pub honor_cordon: bool,
    pub paused: bool,
}

impl HostPoolSpec {
    /// Checks what the schema cannot (or what an API server without CEL let through) and converts the spec
    /// to the engine's types. Every error names its field.
    pub fn validate(&self, pool_name: &str) -> Result<PoolConfig, InvalidSpec> {
        let mut errors = Vec::new();
        let node_selector = selector_or_report(&self.node_selector, "spec.nodeSelector", &mut errors);
        let interval_secs = match kubedrs_spec::duration::parse_secs(&self.interval) {
            Ok(secs) => Some(secs),
            Err(e) => {
                errors.push(FieldError::new("spec.interval", e));
                None
            }
        };
        let c = &self.concurrency;
        let fields = PoolFields {
            automation: Some(match self.automation {
                AutomationLevel::Manual => EngineAutomation::Manual,
                AutomationLevel::PartiallyAutomated => EngineAutomation::PartiallyAutomated,
                AutomationLevel::FullyAutomated => EngineAutomation::FullyAutomated,
            }),
            migration_threshold: Some(i64::from(self.migration_threshold)),
            interval_secs,
            per_pool: Some(Some(c.per_pool)),
            per_node_outbound: Some(Some(c.per_node_outbound)),
            per_node_inbound: Some(Some(c.per_node_inbound)),
            cpu_baseline: Some(self.cpu_baseline.clone()),
            max_migrations_per_pass: Some(i64::from(self.max_migrations_per_pass)),
            max_moves_per_vm_per_day: Some(i64::from(self.max_moves_per_vm_per_day)),
            cooldown_secs: None,
        };
        let built = kubedrs_spec::pool::build(pool_name, &fields, "spec").map_err(|mut es| errors.append(&mut es)).ok();

        let mut rules = Vec::new();
        let mut seen = BTreeMap::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            if let Some(first) = seen.insert(r.name.clone(), i) {
                errors.push(FieldError::new(
                    format!("{at}.name"),
                    format!("{:?} is already the name of spec.rules[{first}]: rule names must be unique", r.name),
                ));
            }
            if r.name.is_empty() {
                errors.push(FieldError::new(format!("{at}.name"), "is empty: every rule needs a name"));
            }
            let vm_selector = selector_or_report(&r.vm_selector, &format!("{at}.vmSelector"), &mut errors);
            let kind = match (r.type_, &r.node_selector) {
                (RuleType::VMNodeAffinity, Some(ns)) => RuleKind::VMNodeAffinity {
                    vm_selector,
                    node_selector: selector_or_report(ns, &format!("{at}.nodeSelector"), &mut errors),
                },
                (RuleType::VMNodeAffinity, None) => {
                    errors.push(FieldError::new(format!("{at}.nodeSelector"), "is required for a VMNodeAffinity rule"));
                    continue;
                }
                (t, Some(_)) => {
                    errors.push(FieldError::new(
                        format!("{at}.nodeSelector"),
                        format!("is only allowed for VMNodeAffinity rules, not {t:?}: remove it or change the type"),
                    ));
                    continue;
                }
                (RuleType::VMAffinity, None) => RuleKind::VMAffinity { vm_selector },
                (RuleType::VMAntiAffinity, None) => RuleKind::VMAntiAffinity { vm_selector },
            };
            let enforcement = match r.enforcement {
                Enforcement::Required => EngineEnforcement::Required,
                Enforcement::Preferred => EngineEnforcement::Preferred,
            };
            rules.push(EngineRule { name: r.name.clone(), kind, enforcement });
        }

        let Some(built) = built.filter(|_| errors.is_empty()) else {
            errors.sort_by_key(|e| field_order(&e.field));
            return Err(InvalidSpec { errors });
        };
        Ok(PoolConfig {
            settings: built.settings,
            node_selector,
            rules,
            interval: Duration::from_secs(built.interval_secs),
            honor_cordon: self.maintenance.honor_cordon,
            paused: self.paused,
        })
    }
}

fn selector_or_report(s: &LabelSelector, field: &str, errors: &mut Vec<FieldError>) -> Selector {
    match to_selector(s, field) {
        Ok(sel) => sel,
        Err(mut es) => {
            errors.append(&mut es);
            Selector::default()
        }
    }
}

/// Converts a Kubernetes label selector to the engine's, checking operators, values and label syntax.
/// `field` is the path used in errors (`spec.rules[0].vmSelector`).
pub fn to_selector(s: &LabelSelector, field: &str) -> Result<Selector, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = Selector::default();
    for (k, v) in s.match_labels.iter().flatten() {
        if let Err(e) = check_label_key(k) {
            errors.push(FieldError::new(format!("{field}.matchLabels[{k}]"), e));
        }
        if let Err(e) = check_label_value(v) {
            errors.push(FieldError::new(format!("{field}.matchLabels[{k}]"), e));
        }
        out.match_labels.insert(k.clone(), v.clone());
    }
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        if let Err(m) = check_label_key(&e.key) {
            errors.push(FieldError::new(format!("{at}.key"), m));
        }
        let values = e.values.clone().unwrap_or_default();
        let operator = match e.operator.as_str() {
            "In" => SelectorOperator::In,
            "NotIn" => SelectorOperator::NotIn,
            "Exists" => SelectorOperator::Exists,
            "DoesNotExist" => SelectorOperator::DoesNotExist,
            other => {
                errors.push(FieldError::new(
                    format!("{at}.operator"),
                    format!("{other:?} is not an operator: use In, NotIn, Exists or DoesNotExist"),
                ));
                continue;
            }
        };
        match operator {
            SelectorOperator::In | SelectorOperator::NotIn if values.is_empty() => {
                errors.push(FieldError::new(format!("{at}.values"), format!("must not be empty with {}", e.operator)))
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !values.is_empty() => {
                errors.push(FieldError::new(format!("{at}.values"), format!("must be empty with {}", e.operator)))
            }
            _ => {}
        }
        for v in &values {
            if let Err(m) = check_label_value(v) {
                errors.push(FieldError::new(format!("{at}.values"), m));
            }
        }
        out.match_expressions.push(SelectorRequirement { key: e.key.clone(), operator, values });
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn is_name_part(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn check_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                let b = l.as_bytes();
                !b.is_empty()
                    && b.len() <= 63
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            });
        if !ok {
            return Err(format!(
                "{k:?} has an invalid prefix: it must be a lowercase DNS subdomain such as example.com"
            ));
        }
    }
    if !is_name_part(name, 63) {
        return Err(format!(
            "{k:?} is not a valid label key: the name must be 1-63 characters, alphanumeric, '-', '_' or '.', \
             starting and ending with an alphanumeric character"
        ));
    }
    Ok(())
}

fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_name_part(v, 63) {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a valid label value: at most 63 characters, alphanumeric, '-', '_' or '.', \
             starting and ending with an alphanumeric character"
        ))
    }
}

/// The duration grammar of kubedrs ([`kubedrs_spec::duration`]), for `spec.interval` and the CLI flags.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    kubedrs_spec::duration::parse(s)
}

/// Errors in the order of the spec's fields (the builder reports the pool fields, this file the selectors
/// and rules).
fn field_order(field: &str) -> usize {
    const ORDER: [&str; 10] = [
        "spec.nodeSelector",
        "spec.automation",
        "spec.migrationThreshold",
        "spec.interval",
        "spec.concurrency",
        "spec.cpuBaseline",
        "spec.maintenance",
        "spec.rules",
        "spec.maxMigrationsPerPass",
        "spec.maxMovesPerVmPerDay",
    ];
    ORDER.iter().position(|p| field.starts_with(p)).unwrap_or(ORDER.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn spec(yaml: &str) -> HostPoolSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_minimal_spec_gets_the_documented_defaults() {
        let s = spec("nodeSelector: {matchLabels: {kubedrs.io/pool: prod}}");
        assert_eq!(s.automation, AutomationLevel::FullyAutomated);
        assert_eq!(s.migration_threshold, 3);
        assert_eq!(s.interval, "5m");
        assert_eq!(s.concurrency, ConcurrencySpec { per_pool: 5, per_node_outbound: 2, per_node_inbound: 2 });
        assert_eq!(s.cpu_baseline, "Auto");
        assert!(!s.maintenance.honor_cordon);
        assert_eq!(s.max_migrations_per_pass, 16);
        assert_eq!(s.max_moves_per_vm_per_day, 6);
        assert!(!s.paused);
        assert_eq!(spec("nodeSelector: {}"), HostPoolSpec::default(), "Default matches the serde defaults");
        let cfg = s.validate("prod").unwrap();
        assert_eq!(cfg.interval, Duration::from_secs(300));
        assert_eq!(cfg.settings.name, "prod");
        assert_eq!(cfg.settings.cpu_baseline, kubedrs_engine::CpuBaselinePolicy::Auto);
        assert_eq!(cfg.settings.concurrency.per_node_inbound, Some(2));
        assert_eq!(cfg.node_selector, Selector::labels(&[("kubedrs.io/pool", "prod")]));
    }

    #[test]
    fn the_api_md_example_converts_to_engine_rules() {
        let s = spec(
            r#"
nodeSelector: {matchLabels: {kubedrs.io/pool: prod}}
automation: PartiallyAutomated
cpuBaseline: Haswell-noTSX
concurrency: {perPool: 5, perNodeOutbound: 2, perNodeInbound: 0}
rules:
- name: web-spread
  type: VMAntiAffinity
  vmSelector: {matchLabels: {app: web}}
- name: db-on-ssd
  type: VMNodeAffinity
  vmSelector: {matchLabels: {tier: db}}
  nodeSelector: {matchExpressions: [{key: disk, operator: In, values: [ssd, nvme]}]}
  enforcement: Preferred
"#,
        );
        let cfg = s.validate("prod").unwrap();
        assert_eq!(cfg.settings.automation, EngineAutomation::PartiallyAutomated);
        assert_eq!(cfg.settings.cpu_baseline, kubedrs_engine::CpuBaselinePolicy::Model("Haswell-noTSX".into()));
        assert_eq!(cfg.settings.concurrency.per_node_inbound, None, "0 means no inbound limit");
        assert_eq!(cfg.rules.len(), 2);
        assert_eq!(cfg.rules[0].kind, RuleKind::VMAntiAffinity { vm_selector: Selector::labels(&[("app", "web")]) });
        assert_eq!(cfg.rules[1].enforcement, EngineEnforcement::Preferred);
        match &cfg.rules[1].kind {
            RuleKind::VMNodeAffinity { node_selector, .. } => {
                assert_eq!(node_selector.match_expressions[0].operator, SelectorOperator::In);
                assert_eq!(node_selector.match_expressions[0].values, vec!["ssd", "nvme"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_and_what_is_allowed() {
        let mut s = spec(
            r#"
nodeSelector: {matchExpressions: [{key: zone, operator: Near, values: [a]}]}
interval: 5s
migrationThreshold: 7
maxMovesPerVmPerDay: 20
cpuBaseline: host-model
rules:
- {name: a, type: VMAffinity, vmSelector: {}, nodeSelector: {}}
- {name: b, type: VMNodeAffinity, vmSelector: {}}
- {name: a, type: VMAntiAffinity, vmSelector: {matchExpressions: [{key: app, operator: In}]}}
"#,
        );
        s.node_selector.match_labels = Some([("Bad Key".to_string(), "x".to_string())].into());
        let err = s.validate("p").unwrap_err();
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.nodeSelector.matchLabels[Bad Key]",
                "spec.nodeSelector.matchExpressions[0].operator",
                "spec.migrationThreshold",
                "spec.interval",
                "spec.cpuBaseline",
                "spec.rules[0].nodeSelector",
                "spec.rules[1].nodeSelector",
                "spec.rules[2].name",
                "spec.rules[2].vmSelector.matchExpressions[0].values",
                "spec.maxMovesPerVmPerDay",
            ]
        );
        let text = err.to_string();
        assert!(text.contains("use In, NotIn, Exists or DoesNotExist"), "{text}");
        assert!(text.contains("shorter than the minimum 10s"), "{text}");
        assert!(text.contains("only allowed for VMNodeAffinity"), "{text}");
        assert!(text.contains("already the name of spec.rules[0]"), "{text}");
    }

    #[test]
    fn durations_use_the_one_grammar() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        for bad in ["", "m", "5 m", "-5m", "5m3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        // The grammar reads more than Go's (`5`, `2d`); the schema's pattern is what keeps `spec.interval`
        // to Go-style durations at the API server.
    }

    #[test]
    fn selector_checks_label_syntax() {
        let ok = LabelSelector {
            match_labels: Some([("kubevirt.io/domain".to_string(), "vm-1".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Exists".into(),
                values: None,
            }]),
        };
        assert!(to_selector(&ok, "s").is_ok());
        for key in ["", "UPPER.example.com/x", "a/", "-a", &"x".repeat(64)] {
            let s = LabelSelector { match_labels: Some([(key.to_string(), "v".into())].into()), ..Default::default() };
            assert!(to_selector(&s, "s").is_err(), "{key:?}");
        }
        let s =
            LabelSelector { match_labels: Some([("k".to_string(), "bad value".into())].into()), ..Default::default() };
        assert!(to_selector(&s, "s").is_err());
    }
}
