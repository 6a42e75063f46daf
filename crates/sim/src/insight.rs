//! What a run's figures do not say by themselves, for the text summary, `--json` (`insights`) and the report:
//! warnings about the scenario before it runs (VMs that fit no node, quantities no machine has), why balancing
//! stopped above its target, the CPU baseline the pool resolved, and oscillation (VMs that go back and forth
//! over a day, which the ping-pong count of a short window misses).

use super::metrics::{MigrationRecord, RunResult};
use super::scenario::Scenario;
use kubedrs_engine::{CpuBaselinePolicy, CpuRequirement};
use kubedrs_spec::quantity::{format_cpu, format_memory};
use serde::Serialize;
use std::collections::BTreeMap;

/// A day: the window of oscillation.
pub const DAY_SECS: f64 = 86_400.0;
/// More memory than this on one VM (64 Ti) or one node (64 Pi) is taken for a typo.
const ABSURD_VM_MEMORY: u64 = 64 << 40;
const ABSURD_NODE_MEMORY: u64 = 64 << 50;
/// More CPU than this on one VM (10,000 cores) or one node (1,000,000 cores) is taken for a typo.
const ABSURD_VM_CPU_MILLIS: u64 = 10_000_000;
const ABSURD_NODE_CPU_MILLIS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Insights {
    /// About the scenario, before it runs.
    pub warnings: Vec<String>,
    /// Why the last balancing pass left the pool above its target, when it did.
    pub stopped_above_target: Option<StoppedAboveTarget>,
    /// The pool's CPU baseline: the setting and the model it resolved to at the last pass.
    pub cpu_baseline: CpuBaseline,
    pub oscillation: Oscillation,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoppedAboveTarget {
    pub t: u64,
    pub imbalance: f64,
    pub target: f64,
    /// The engine's own words for the last balancing pass.
    pub why: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuBaseline {
    /// `Auto`, `Off` or the model named in the scenario.
    pub setting: String,
    /// The model the last pass used (none: no model every node supports, or `Off`).
    pub resolved: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Oscillation {
    /// Completed moves that took a VM back to a node it had left less than 24 h before.
    pub returns_within_day: u32,
    /// VMs with at least one such return.
    pub vms: u32,
    /// Most completed moves of one VM within any 24 h, and that VM (the first by name on a tie).
    pub most_moves_in_a_day: u32,
    pub busiest_vm: Option<String>,
}

/// Everything above, for a finished run of `s`.
pub fn of(s: &Scenario, r: &RunResult) -> Insights {
    Insights {
        warnings: warnings(s),
        stopped_above_target: stopped_above_target(r),
        cpu_baseline: cpu_baseline(s, r),
        oscillation: oscillation(&r.migrations),
    }
}

/// VMs that fit no node (by reservation or CPU model), and quantities no machine has (a typo such as
/// `memory: 999999Ei`, which would otherwise run quietly).
pub fn warnings(s: &Scenario) -> Vec<String> {
    let mut out = Vec::new();
    let max_cpu = s.nodes.iter().map(|n| n.capacity.cpu_millis).max().unwrap_or(0);
    let max_mem = s.nodes.iter().map(|n| n.capacity.memory_bytes).max().unwrap_or(0);
    // Per VM group: one warning for all its members.
    let mut groups: BTreeMap<(String, String), (String, usize)> = BTreeMap::new();
    let mut note = |origin: &str, what: String, vm: &str| {
        let e = groups.entry((origin.to_string(), what)).or_insert_with(|| (vm.to_string(), 0));
        e.1 += 1;
    };
    for d in &s.vms {
        let v = &d.vm;
        if v.memory.reservation > ABSURD_VM_MEMORY || v.memory_size_bytes > ABSURD_VM_MEMORY {
            let m = v.memory.reservation.max(v.memory_size_bytes);
            note(&d.origin, format!("memory {} is more than any machine has: a typo?", big_memory(m)), &v.name);
        }
        if v.cpu.reservation > ABSURD_VM_CPU_MILLIS || u64::from(v.vcpus) * 1000 > ABSURD_VM_CPU_MILLIS {
            note(
                &d.origin,
                format!(
                    "{} vCPUs and a CPU request of {} are more than any machine has: a typo?",
                    v.vcpus,
                    format_cpu(v.cpu.reservation)
                ),
                &v.name,
            );
        }
        if v.cpu.reservation > max_cpu {
            note(
                &d.origin,
                format!(
                    "requests {} CPU, more than the largest node has ({}): it fits no node and never runs",
                    format_cpu(v.cpu.reservation),
                    format_cpu(max_cpu)
                ),
                &v.name,
            );
        }
        if v.memory.reservation > max_mem {
            note(
                &d.origin,
                format!(
                    "requests {} of memory, more than the largest node has ({}): it fits no node and never runs",
                    big_memory(v.memory.reservation),
                    big_memory(max_mem)
                ),
                &v.name,
            );
        }
        if let CpuRequirement::Model(m) = &v.cpu_requirement
            && !s.nodes.iter().any(|n| n.cpu_models.contains(m))
        {
            note(
                &d.origin,
                format!("needs CPU model {m}, which no node supports: it fits no node and never runs"),
                &v.name,
            );
        }
    }
    for ((origin, what), (first, n)) in groups {
        let who = if n == 1 { first } else { format!("{n} VMs ({first}, ...)") };
        out.push(format!("{origin}: {who}: {what}"));
    }
    for (n, origin) in s.nodes.iter().zip(&s.node_origins) {
        if n.capacity.memory_bytes > ABSURD_NODE_MEMORY {
            out.push(format!(
                "{origin}: node {} has {} of memory, more than any machine has: a typo?",
                n.name,
                big_memory(n.capacity.memory_bytes)
            ));
        }
        if n.capacity.cpu_millis > ABSURD_NODE_CPU_MILLIS {
            out.push(format!(
                "{origin}: node {} has {} CPU, more than any machine has: a typo?",
                n.name,
                format_cpu(n.capacity.cpu_millis)
            ));
        }
    }
    out.dedup();
    out
}

/// Quantities so large that the run's sums would overflow (`memory: 999999Ei` is read as the largest number
/// there is): the run is refused, as no answer it gives would mean anything.
pub fn refusals(s: &Scenario) -> Vec<String> {
    const MAX_ONE: u64 = 1 << 60; // 1 Ei of memory, or 2^60 millicores
    let mut out = Vec::new();
    let (mut mem, mut cpu) = (0u128, 0u128);
    let mut seen = std::collections::BTreeSet::new();
    for d in &s.vms {
        let v = &d.vm;
        let m = v.memory.reservation.max(v.memory_size_bytes).max(v.memory.limit.unwrap_or(0));
        let c = v.cpu.reservation.max(v.cpu.limit.unwrap_or(0));
        mem += u128::from(m);
        cpu += u128::from(c);
        if (m >= MAX_ONE || c >= MAX_ONE) && seen.insert(d.origin.clone()) {
            out.push(format!(
                "{}: {}: memory {} / CPU {} is too large to simulate (more than 1Ei): a typo?",
                d.origin,
                v.name,
                big_memory(m),
                format_cpu(c)
            ));
        }
    }
    for (n, origin) in s.nodes.iter().zip(&s.node_origins) {
        mem += u128::from(n.capacity.memory_bytes);
        cpu += u128::from(n.capacity.cpu_millis);
        if (n.capacity.memory_bytes >= MAX_ONE || n.capacity.cpu_millis >= MAX_ONE) && seen.insert(origin.clone()) {
            out.push(format!("{origin}: node {} is too large to simulate (more than 1Ei of memory): a typo?", n.name));
        }
    }
    if out.is_empty() && (mem > u128::from(u64::MAX / 4) || cpu > u128::from(u64::MAX / 4)) {
        out.push("the VMs and nodes add up to more memory or CPU than can be counted: a typo in a quantity?".into());
    }
    out
}

/// Memory in words; the largest values (a quantity past 16 Ei is cut to the largest number there is) say so.
fn big_memory(bytes: u64) -> String {
    if bytes == u64::MAX { "16Ei or more (too large to count)".to_string() } else { format_memory(bytes) }
}

/// The last balancing pass, when it left the imbalance above the target.
pub fn stopped_above_target(r: &RunResult) -> Option<StoppedAboveTarget> {
    let last = r.passes.iter().rev().find(|p| p.kind == "balance")?;
    (last.imbalance_after > last.target + 1e-9).then(|| StoppedAboveTarget {
        t: last.t,
        imbalance: last.imbalance_after,
        target: last.target,
        why: if last.balance_summary.trim().is_empty() {
            "the engine gave no reason".to_string()
        } else {
            last.balance_summary.trim().to_string()
        },
    })
}

pub fn cpu_baseline(s: &Scenario, r: &RunResult) -> CpuBaseline {
    CpuBaseline {
        setting: match &s.pool.cpu_baseline {
            CpuBaselinePolicy::Auto => "Auto".to_string(),
            CpuBaselinePolicy::Off => "Off".to_string(),
            CpuBaselinePolicy::Model(m) => m.clone(),
        },
        resolved: r.passes.iter().rev().find_map(|p| p.baseline.clone()),
    }
}

/// Oscillation over the completed migrations (in any order).
pub fn oscillation(migrations: &[MigrationRecord]) -> Oscillation {
    let mut by_vm: BTreeMap<&str, Vec<&MigrationRecord>> = BTreeMap::new();
    for m in migrations.iter().filter(|m| m.outcome == "completed") {
        by_vm.entry(m.vm.as_str()).or_default().push(m);
    }
    let mut o = Oscillation::default();
    for (vm, mut moves) in by_vm {
        moves.sort_by(|a, b| a.ended.total_cmp(&b.ended));
        let mut returns = 0;
        for (i, m) in moves.iter().enumerate() {
            // It left `m.to` at some earlier move's end, less than a day before it arrived there again.
            if moves[..i].iter().any(|e| e.from == m.to && m.ended - e.ended < DAY_SECS) {
                returns += 1;
            }
        }
        o.returns_within_day += returns;
        o.vms += u32::from(returns > 0);
        let mut first = 0;
        for last in 0..moves.len() {
            while moves[last].ended - moves[first].ended >= DAY_SECS {
                first += 1;
            }
            let n = (last - first + 1) as u32;
            if n > o.most_moves_in_a_day {
                o.most_moves_in_a_day = n;
                o.busiest_vm = Some(vm.to_string());
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(vm: &str, from: &str, to: &str, ended_h: f64) -> MigrationRecord {
        MigrationRecord {
            vm: vm.into(),
            from: from.into(),
            to: to.into(),
            reason: "balance".into(),
            started: (ended_h * 3600.0) as u64,
            ended: ended_h * 3600.0 + 60.0,
            outcome: "completed".into(),
            gib: 1.0,
        }
    }

    #[test]
    fn back_and_forth_within_a_day_is_oscillation() {
        // node-3 -> node-5 -> node-3 -> node-5 in 10 hours: two returns, three moves in a day.
        let m = [mv("a", "node-3", "node-5", 0.0), mv("a", "node-5", "node-3", 4.0), mv("a", "node-3", "node-5", 10.0)];
        let o = oscillation(&m);
        assert_eq!((o.returns_within_day, o.vms, o.most_moves_in_a_day), (2, 1, 3));
        assert_eq!(o.busiest_vm.as_deref(), Some("a"));
    }

    #[test]
    fn a_return_after_a_day_or_a_failed_move_is_not() {
        let mut failed = mv("b", "n2", "n1", 3.0);
        failed.outcome = "failed".into();
        let m = [mv("a", "n1", "n2", 0.0), mv("a", "n2", "n1", 25.0), mv("b", "n1", "n2", 1.0), failed];
        let o = oscillation(&m);
        assert_eq!((o.returns_within_day, o.vms, o.most_moves_in_a_day), (0, 0, 1));
        // A one-way tour is no oscillation either, however many moves.
        let m = [mv("c", "n1", "n2", 0.0), mv("c", "n2", "n3", 1.0), mv("c", "n3", "n4", 2.0)];
        let o = oscillation(&m);
        assert_eq!((o.returns_within_day, o.most_moves_in_a_day), (0, 3));
    }
}
