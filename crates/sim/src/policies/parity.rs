//! The descheduler parity cases (`e2e/descheduler/cases.yaml`) on the re-implementation's side: each case
//! (nodes, pods with usage and requests, `LowNodeUtilization` args) becomes a snapshot and a
//! [`Descheduler`], and its evictions are compared with the answer recorded in the file. The e2e test
//! `e2e/harness/tests/descheduler.rs` checks the real descheduler against the same answers, so the two agree
//! through the file (see `e2e/descheduler/README.md`).

use super::kube::{Descheduler, Res, Scheduler};
use kubedrs_engine::build::{bytes, millis};
use kubedrs_engine::{Node, Resources, Snapshot, Vm};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

/// One shared case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub about: String,
    pub policy: Policy,
    pub nodes: Vec<CaseNode>,
    pub pods: Vec<CasePod>,
    /// What both sides evict (the re-implementation's pick among identical pods).
    pub evicted: Vec<String>,
    /// The re-implementation's own answer where it differs from the descheduler's.
    #[serde(default)]
    pub reimplementation: Option<Vec<String>>,
    /// Why it differs.
    #[serde(default)]
    pub difference: Option<String>,
}

/// `LowNodeUtilization`'s args as the v1alpha2 policy spells them, plus the top-level total limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub use_deviation_thresholds: bool,
    pub thresholds: BTreeMap<String, f64>,
    pub target_thresholds: BTreeMap<String, f64>,
    #[serde(default)]
    pub number_of_nodes: usize,
    #[serde(default)]
    pub eviction_limits: Option<EvictionLimits>,
    #[serde(default)]
    pub max_no_of_pods_to_evict_total: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvictionLimits {
    pub node: Option<u32>,
}

/// A node: CPU in cores, memory in GiB (110 pods, the kubelet default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseNode {
    pub name: String,
    pub cpu: f64,
    pub memory: f64,
}

/// A pod (a VM's virt-launcher pod): usage in cores and GiB, requests likewise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasePod {
    pub name: String,
    pub node: String,
    pub cpu: f64,
    pub memory: f64,
    #[serde(default)]
    pub requests: Option<Requests>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requests {
    pub cpu: f64,
    pub memory: f64,
}

/// KubeVirt's default request for a small VM: vCPUs/10 of CPU, the guest memory.
pub const DEFAULT_REQUESTS: Requests = Requests { cpu: 0.1, memory: 1.0 };

impl CasePod {
    pub fn requests(&self) -> Requests {
        self.requests.unwrap_or(DEFAULT_REQUESTS)
    }
}

/// Parses and checks the case file: unique names, pods on known nodes, every node with a pod (the
/// descheduler needs NodeMetrics, which metrics-server has only for nodes with pods), thresholds on
/// `cpu`/`memory`/`pods` only and on the same resources, quantities finite and not negative.
pub fn parse(text: &str) -> Result<Vec<Case>, String> {
    let file: CaseFile = serde_yaml::from_str(text).map_err(|e| format!("case file: {e}"))?;
    let mut names = BTreeSet::new();
    for c in &file.cases {
        if !names.insert(c.name.as_str()) {
            return Err(format!("case {}: name used twice", c.name));
        }
        check(c).map_err(|e| format!("case {}: {e}", c.name))?;
    }
    Ok(file.cases)
}

fn check(c: &Case) -> Result<(), String> {
    let amount = |what: &str, v: f64| {
        if v.is_finite() && v >= 0.0 { Ok(()) } else { Err(format!("{what} is {v}: not a quantity")) }
    };
    let mut nodes = BTreeSet::new();
    for n in &c.nodes {
        if !nodes.insert(n.name.as_str()) {
            return Err(format!("node {} listed twice", n.name));
        }
        amount(&format!("node {} cpu", n.name), n.cpu)?;
        amount(&format!("node {} memory", n.name), n.memory)?;
        if n.cpu == 0.0 || n.memory == 0.0 {
            return Err(format!("node {} has no capacity", n.name));
        }
    }
    let mut pods = BTreeSet::new();
    let mut used = BTreeSet::new();
    for p in &c.pods {
        if !pods.insert(p.name.as_str()) {
            return Err(format!("pod {} listed twice", p.name));
        }
        if !nodes.contains(p.node.as_str()) {
            return Err(format!("pod {} is on unknown node {}", p.name, p.node));
        }
        used.insert(p.node.as_str());
        let r = p.requests();
        for (what, v) in [("cpu", p.cpu), ("memory", p.memory), ("requests.cpu", r.cpu), ("requests.memory", r.memory)]
        {
            amount(&format!("pod {} {what}", p.name), v)?;
        }
    }
    if let Some(n) = nodes.difference(&used).next() {
        return Err(format!("node {n} has no pod (it would have no NodeMetrics)"));
    }
    let (low, high) = (&c.policy.thresholds, &c.policy.target_thresholds);
    if low.is_empty() || low.keys().ne(high.keys()) {
        return Err("thresholds and targetThresholds must name the same, non-empty set of resources".into());
    }
    for (r, v) in low.iter().chain(high.iter()) {
        resource(r)?;
        if !(0.0..=100.0).contains(v) {
            return Err(format!("threshold {r}: {v} is not a percentage"));
        }
    }
    for v in c.evicted.iter().chain(c.reimplementation.iter().flatten()) {
        if !pods.contains(v.as_str()) {
            return Err(format!("expected eviction of unknown pod {v}"));
        }
    }
    Ok(())
}

fn resource(name: &str) -> Result<Res, String> {
    match name {
        "cpu" => Ok(Res::Cpu),
        "memory" => Ok(Res::Memory),
        "pods" => Ok(Res::Pods),
        _ => Err(format!("resource {name}: only cpu, memory and pods")),
    }
}

impl Case {
    /// The pool as the simulator sees it: VMs with the pods' usage as demand and their requests as
    /// reservations.
    pub fn snapshot(&self) -> Snapshot {
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node { capacity: Resources::new(millis(n.cpu), bytes(n.memory)), ..Node::test(&n.name) })
            .collect();
        let vms = self
            .pods
            .iter()
            .map(|p| {
                let r = p.requests();
                Vm::test(&p.name).on(&p.node).demand(p.cpu, p.memory).reserve(r.cpu, r.memory)
            })
            .collect();
        Snapshot::test(nodes, vms)
    }

    /// The re-implementation configured like the case's policy (unset limits: unlimited).
    pub fn descheduler(&self) -> Result<Descheduler, String> {
        let list = |m: &BTreeMap<String, f64>| -> Result<Vec<(Res, f64)>, String> {
            m.iter().map(|(r, v)| Ok((resource(r)?, *v))).collect()
        };
        let p = &self.policy;
        Ok(Descheduler {
            label: format!("parity-{}", self.name),
            thresholds: list(&p.thresholds)?,
            target_thresholds: list(&p.target_thresholds)?,
            deviation: p.use_deviation_thresholds,
            number_of_nodes: p.number_of_nodes,
            per_node: p.eviction_limits.as_ref().and_then(|l| l.node).unwrap_or(u32::MAX),
            total: p.max_no_of_pods_to_evict_total.unwrap_or(u32::MAX),
        })
    }

    /// The pods the re-implementation evicts in one cycle, in its order.
    pub fn reimplementation_evictions(&self) -> Result<Vec<String>, String> {
        let snap = self.snapshot();
        let policy = self.descheduler()?;
        let mut sched = Scheduler::new(&snap);
        Ok(policy.evictions(&mut sched).into_iter().map(|(v, _, _)| snap.vms[v].name.clone()).collect())
    }

    /// What the re-implementation should evict: its own answer where the case records a difference.
    pub fn expected_reimplementation(&self) -> &[String] {
        self.reimplementation.as_deref().unwrap_or(&self.evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &str = include_str!("../../../../e2e/descheduler/cases.yaml");

    #[test]
    fn the_re_implementation_gives_the_recorded_answer_on_every_shared_case() {
        let cases = parse(CASES).expect("the shared case file parses");
        assert!(cases.len() >= 8, "the shared cases are all there ({})", cases.len());
        let mut wrong = Vec::new();
        for c in &cases {
            let got = c.reimplementation_evictions().expect("a valid case");
            let want = c.expected_reimplementation();
            if got != want {
                wrong.push(format!("{}: re-implementation evicts {got:?}, the file says {want:?}", c.name));
            }
            // A recorded difference must be one: if the two ever agree, the file has to say so.
            if c.reimplementation.is_some() {
                assert!(c.difference.is_some(), "{}: a difference without its reason", c.name);
                let (a, b): (BTreeSet<&String>, BTreeSet<&String>) = (got.iter().collect(), c.evicted.iter().collect());
                assert_ne!(a, b, "{}: recorded as a difference, but both sides agree", c.name);
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn a_malformed_case_is_an_error_not_a_panic() {
        let base = |policy: &str, nodes: &str, pods: &str, evicted: &str| {
            format!("cases:\n- name: x\n  policy: {policy}\n  nodes: {nodes}\n  pods: {pods}\n  evicted: {evicted}\n")
        };
        let ok_policy = "{thresholds: {cpu: 20}, targetThresholds: {cpu: 50}}";
        let ok_nodes = "[{name: a, cpu: 10, memory: 100}]";
        let ok_pods = "[{name: p, node: a, cpu: 1, memory: 1}]";
        assert!(parse(&base(ok_policy, ok_nodes, ok_pods, "[p]")).is_ok(), "the well-formed base parses");
        let bad = [
            ("unknown node", base(ok_policy, ok_nodes, "[{name: p, node: z, cpu: 1, memory: 1}]", "[]")),
            (
                "node without pods",
                base(ok_policy, "[{name: a, cpu: 1, memory: 1}, {name: b, cpu: 1, memory: 1}]", ok_pods, "[]"),
            ),
            ("negative usage", base(ok_policy, ok_nodes, "[{name: p, node: a, cpu: -1, memory: 1}]", "[]")),
            ("unknown resource", base("{thresholds: {gpu: 20}, targetThresholds: {gpu: 50}}", ok_nodes, ok_pods, "[]")),
            (
                "different resources",
                base("{thresholds: {cpu: 20}, targetThresholds: {memory: 50}}", ok_nodes, ok_pods, "[]"),
            ),
            (
                "not a percentage",
                base("{thresholds: {cpu: 20}, targetThresholds: {cpu: 150}}", ok_nodes, ok_pods, "[]"),
            ),
            ("unknown evicted pod", base(ok_policy, ok_nodes, ok_pods, "[q]")),
            (
                "unknown field",
                base("{thresholds: {cpu: 20}, targetThresholds: {cpu: 50}, x: 1}", ok_nodes, ok_pods, "[]"),
            ),
            ("not YAML", "cases: [".to_string()),
        ];
        for (what, text) in bad {
            assert!(parse(&text).is_err(), "{what}: accepted");
        }
        let twice =
            format!("{}{}", base(ok_policy, ok_nodes, ok_pods, "[]"), &base(ok_policy, ok_nodes, ok_pods, "[]")[7..]);
        assert!(parse(&twice).unwrap_err().contains("twice"), "a case name used twice");
    }

    #[test]
    fn limits_and_requests_map_onto_the_re_implementation() {
        let cases = parse(CASES).expect("parses");
        let by_name = |n: &str| cases.iter().find(|c| c.name == n).expect("case present");
        let d = by_name("deviation-per-node-limit").descheduler().expect("valid");
        assert!(d.deviation);
        assert_eq!((d.per_node, d.total), (1, 5));
        let d = by_name("one-over-two-under").descheduler().expect("valid");
        assert_eq!((d.per_node, d.total), (u32::MAX, u32::MAX), "unset limits are unlimited");
        let snap = by_name("no-target-fits").snapshot();
        assert_eq!(snap.vms[0].memory.reservation, 30 << 30);
        assert_eq!(snap.vms[0].demand.cpu_millis, 2400);
    }
}
