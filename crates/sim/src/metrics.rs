//! What a run measured: per step (node loads, demand met, migrations in flight), per pass (imbalance, target,
//! what the plan asked and what was carried out), the timeline, and the summary. [`RunResult`] is what `--json`
//! prints; everything in it repeats exactly for the same scenario and seed except [`Timing`] (wall-clock time of
//! the engine), kept apart for that reason.

use super::cluster::{Cluster, VmStatus};
use super::divvy::{Claim, divvy};
use kubedrs_engine::{Resource, RuleKind, Vm};
use serde::Serialize;
use std::collections::BTreeMap;

/// `HH:MM` from the start of the run (hours go past 24 on long runs, so lines sort as text).
pub fn clock(t: f64) -> String {
    let t = t.max(0.0) as u64;
    format!("{:02}:{:02}", t / 3600, t % 3600 / 60)
}

/// A duration in the scenario's own units (`90s`, `5m`, `2h`, `1h30m`).
pub fn span(s: u64) -> String {
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if sec > 0 || out.is_empty() {
        out += &format!("{sec}s");
    }
    out
}

/// Rounds for compact, stable JSON.
pub fn r4(x: f64) -> f64 {
    if x.is_finite() { (x * 10_000.0).round() / 10_000.0 } else { 0.0 }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    pub scenario: String,
    pub file: String,
    pub description: String,
    pub seed: u64,
    pub duration_secs: u64,
    pub step_secs: u64,
    pub interval_secs: u64,
    pub automation: String,
    pub migration_threshold: u8,
    pub summary: Summary,
    pub passes: Vec<PassRecord>,
    pub steps: StepSeries,
    pub migrations: Vec<MigrationRecord>,
    pub timeline: Vec<TimelineEntry>,
    /// Wall-clock figures: they differ from run to run.
    pub timing: Timing,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuMem {
    pub cpu: f64,
    pub memory: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub mean: f64,
    pub p95: f64,
    pub max: f64,
    pub last: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
        if values.is_empty() {
            return Stats::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let p95 = sorted[((sorted.len() as f64 * 0.95).ceil() as usize).clamp(1, sorted.len()) - 1];
        Stats {
            mean: r4(values.iter().sum::<f64>() / values.len() as f64),
            p95: r4(p95),
            max: r4(sorted[sorted.len() - 1]),
            last: r4(values[values.len() - 1]),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationTotals {
    pub started: u32,
    pub completed: u32,
    /// Chance failures (the scenario's failureProbability).
    pub failed: u32,
    /// Did not converge before KubeVirt's completion timeout.
    pub timed_out: u32,
    /// A node failed under it or its VM was powered off.
    pub aborted: u32,
    /// Started, per reason (maintenance, rule, reservation, balance).
    pub by_reason: BTreeMap<String, u32>,
    /// Sent by completed migrations.
    pub gib_moved: f64,
    /// Sent by migrations that did not complete.
    pub gib_wasted: f64,
    pub mean_secs: f64,
    pub max_secs: f64,
    /// Most in flight at once.
    pub max_in_flight: u32,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Share of demand served over the run (demand-time), CPU and memory.
    pub demand_met: CpuMem,
    /// The same per VM group (by its name or prefix).
    pub demand_met_by_group: BTreeMap<String, CpuMem>,
    /// The engine's imbalance as each balancing pass found it, and its target.
    pub imbalance: Stats,
    pub target_imbalance: Stats,
    /// Standard deviation of CPU demand/capacity over the nodes taking VMs, every step (the simulator's own measure).
    pub cpu_load_stddev: Stats,
    /// CPU demand/capacity of the hottest node, every step.
    pub hottest_node: Stats,
    pub migrations: MigrationTotals,
    /// Moves that took a VM back to a node it had left within the ping-pong window.
    pub ping_pong: u32,
    pub placements: u32,
    /// Moves and placements the plan gave that were not carried out by policy (automation level, recommend-only).
    pub recommendations: u32,
    /// Moves the plan marked deferred, or that found no concurrency slot when started.
    pub deferred: u32,
    /// Plan entries that no longer matched the pool (VM gone, node not ready): a bug to look at if not 0.
    pub rejected: u32,
    /// Most VMs the plan reported blocked in one pass, and VM-passes blocked in all.
    pub blocked_max: u32,
    pub blocked_vm_passes: u32,
    /// VM-minutes spent breaking a Required / Preferred rule.
    pub required_rule_violation_minutes: f64,
    pub preferred_rule_violation_minutes: f64,
    /// VM-minutes on a node that lacks the VM's CPU model (must stay 0).
    pub cpu_model_violation_minutes: f64,
    /// Node-minutes a node receiving a migration spent above 100% of its allocatable in CPU or memory requests,
    /// or of its memory in what its VMs hold (memory in use, at least the request), counting the VMs on their
    /// way in (their sources hold them too until the migration ends). A plan carried out in its order keeps
    /// this at 0.
    pub transit_overcommit_node_minutes: f64,
    /// VMs still waiting for a node at the end.
    pub pending_at_end: u32,
    pub balancing_passes: u32,
    pub placement_passes: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PassRecord {
    pub t: u64,
    /// `balance` (every interval) or `placement` (new pending VMs between passes: only placements are acted on).
    pub kind: &'static str,
    pub imbalance_before: f64,
    pub imbalance_after: f64,
    pub target: f64,
    pub load_spread_after: f64,
    pub placements: u32,
    pub moves_planned: u32,
    pub started: u32,
    pub recommended: u32,
    pub deferred: u32,
    pub rejected: u32,
    pub blocked: u32,
    pub rule_notes: u32,
    pub baseline: Option<String>,
    pub balance_summary: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepSeries {
    pub t: Vec<u64>,
    /// Node names, in the order of `cpuLoad` and `memoryLoad`.
    pub nodes: Vec<String>,
    /// Per node, per step: demand / capacity (null before the node exists).
    pub cpu_load: Vec<Vec<Option<f64>>>,
    pub memory_load: Vec<Vec<Option<f64>>>,
    /// Per step: share of demand served.
    pub cpu_met: Vec<f64>,
    pub memory_met: Vec<f64>,
    /// Per VM group, per step: share of CPU demand served.
    pub group_cpu_met: BTreeMap<String, Vec<f64>>,
    pub in_flight: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRecord {
    pub vm: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub started: u64,
    pub ended: f64,
    pub outcome: String,
    pub gib: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub t: u64,
    /// `event`, `pass`, `placement`, `migration`, `maintenance`, `ha`, `warning`.
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timing {
    /// Engine time per pass, microseconds, in the order of `passes`.
    pub pass_micros: Vec<u64>,
    pub max_decision_ms: f64,
    pub mean_decision_ms: f64,
    pub total_ms: f64,
}

/// Accumulates the per-step figures.
#[derive(Debug, Default)]
pub struct StepRecorder {
    pub series: StepSeries,
    demand: [f64; 2],
    served: [f64; 2],
    group_demand: BTreeMap<String, ([f64; 2], [f64; 2])>,
    pub stddev: Vec<f64>,
    pub hottest: Vec<f64>,
    pub required_minutes: f64,
    pub preferred_minutes: f64,
    pub cpu_model_minutes: f64,
    pub transit_overcommit_minutes: f64,
}

impl StepRecorder {
    /// Records the pool at step time `t` (the state holds until the next step).
    pub fn record(&mut self, c: &Cluster, t: u64, step: u64) {
        let s = &mut self.series;
        s.t.push(t);
        let k = s.t.len() - 1;
        // Node-level divvy: each node's capacity among the VMs on it, and the memory held for incoming migrations.
        let mut served: Vec<(f64, f64)> = vec![(0.0, 0.0); c.vms.len()];
        let (mut counted, mut hottest) = (Vec::new(), 0.0f64);
        for (ni, n) in c.nodes.iter().enumerate() {
            let name = &n.node.name;
            if s.nodes.len() <= ni {
                s.nodes.push(name.clone());
                s.cpu_load.push(vec![None; k]);
                s.memory_load.push(vec![None; k]);
            }
            let on: Vec<usize> = (0..c.vms.len())
                .filter(|&i| c.vms[i].status == VmStatus::Running && c.vms[i].vm.node.as_deref() == Some(name))
                .collect();
            let incoming: Vec<usize> = c.migrations.iter().filter(|m| &m.target == name).map(|m| m.vm).collect();
            let cap = n.node.capacity;
            if n.failed {
                s.cpu_load[ni].push(Some(0.0));
                s.memory_load[ni].push(Some(0.0));
                continue;
            }
            let cpu_claims: Vec<Claim> =
                on.iter().map(|&i| claim(&c.vms[i].vm, Resource::Cpu, c.vms[i].demand.0)).collect();
            let mem_claims: Vec<Claim> =
                on.iter().chain(&incoming).map(|&i| claim(&c.vms[i].vm, Resource::Memory, c.vms[i].demand.1)).collect();
            let cpu = divvy(cap.cpu_millis as f64, &cpu_claims);
            let mem = divvy(cap.memory_bytes as f64, &mem_claims);
            for (j, &i) in on.iter().enumerate() {
                served[i] = (cpu[j], mem[j]);
            }
            // Transit overcommit: a node a migration goes to, above its allocatable with the VMs on their way
            // in counted (their sources still hold them too). A source only loses when its migration ends.
            if !incoming.is_empty() {
                let held = on.iter().chain(&incoming).map(|&i| &c.vms[i]);
                let (mut cpu_req, mut mem_req, mut mem_held) = (0u64, 0u64, 0.0f64);
                for v in held {
                    cpu_req += v.vm.cpu.reservation;
                    mem_req += v.vm.memory.reservation;
                    mem_held += v.demand.1.max(v.vm.memory.reservation as f64);
                }
                if cpu_req > cap.cpu_millis || mem_req > cap.memory_bytes || mem_held > cap.memory_bytes as f64 {
                    self.transit_overcommit_minutes += step as f64 / 60.0;
                }
            }
            let cpu_load = cpu_claims.iter().map(|c| c.demand).sum::<f64>() / cap.cpu_millis.max(1) as f64;
            let mem_load = mem_claims.iter().map(|c| c.demand).sum::<f64>() / cap.memory_bytes.max(1) as f64;
            s.cpu_load[ni].push(Some(r4(cpu_load)));
            s.memory_load[ni].push(Some(r4(mem_load)));
            if !n.maintenance {
                counted.push(cpu_load);
                hottest = hottest.max(cpu_load);
            }
        }
        let (mut dem, mut got) = ([0.0; 2], [0.0; 2]);
        let mut step_groups: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for (i, v) in c.vms.iter().enumerate() {
            let g = self.group_demand.entry(v.group.clone()).or_default();
            let sg = step_groups.entry(&v.group).or_default();
            if v.is_on() {
                dem[0] += v.demand.0;
                dem[1] += v.demand.1;
                got[0] += served[i].0;
                got[1] += served[i].1;
                g.0[0] += v.demand.0;
                g.0[1] += v.demand.1;
                g.1[0] += served[i].0;
                g.1[1] += served[i].1;
                sg.0 += v.demand.0;
                sg.1 += served[i].0;
            }
        }
        for (g, (d, got)) in step_groups {
            let series = s.group_cpu_met.entry(g.to_string()).or_insert_with(|| vec![1.0; k]);
            series.push(r4(if d > 0.0 { got / d } else { 1.0 }));
        }
        for r in 0..2 {
            self.demand[r] += dem[r];
            self.served[r] += got[r];
        }
        s.cpu_met.push(r4(if dem[0] > 0.0 { got[0] / dem[0] } else { 1.0 }));
        s.memory_met.push(r4(if dem[1] > 0.0 { got[1] / dem[1] } else { 1.0 }));
        s.in_flight.push(c.migrations.len() as u32);
        self.stddev.push(stddev(&counted));
        self.hottest.push(hottest);
        let (req, pref) = rule_violations(c);
        let minutes = step as f64 / 60.0;
        self.required_minutes += req as f64 * minutes;
        self.preferred_minutes += pref as f64 * minutes;
        self.cpu_model_minutes += cpu_model_violations(c) as f64 * minutes;
    }

    pub fn demand_met(&self) -> CpuMem {
        met(&self.demand, &self.served)
    }

    pub fn demand_met_by_group(&self) -> BTreeMap<String, CpuMem> {
        self.group_demand.iter().map(|(g, (d, s))| (g.clone(), met(d, s))).collect()
    }
}

fn met(demand: &[f64; 2], served: &[f64; 2]) -> CpuMem {
    let f = |r: usize| r4(if demand[r] > 0.0 { served[r] / demand[r] } else { 1.0 });
    CpuMem { cpu: f(0), memory: f(1) }
}

/// Running VMs on a node that lacks their CPU model.
fn cpu_model_violations(c: &Cluster) -> u32 {
    c.vms
        .iter()
        .filter(|v| v.status == VmStatus::Running)
        .filter(|v| {
            let node = v.vm.node.as_deref().and_then(|n| c.node(n));
            node.is_some_and(|i| !v.vm.cpu_requirement.allows(&c.nodes[i].node))
        })
        .count() as u32
}

fn claim(vm: &Vm, r: Resource, demand: f64) -> Claim {
    let a = vm.allocation(r);
    Claim { reservation: a.reservation as f64, limit: a.limit.map(|l| l as f64), shares: vm.shares(r), demand }
}

fn stddev(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// VMs breaking a rule now: (Required, Preferred). Affinity counts the VMs off the node holding most of them;
/// anti-affinity the VMs beyond the first on a node; VM-node the VMs on a node the selector does not match.
pub fn rule_violations(c: &Cluster) -> (u32, u32) {
    let (mut required, mut preferred) = (0, 0);
    for rule in &c.rules {
        let mut per_node: BTreeMap<&str, u32> = BTreeMap::new();
        let mut off_node = 0;
        for v in &c.vms {
            let (VmStatus::Running, Some(node)) = (v.status, v.vm.node.as_deref()) else { continue };
            if !rule.vm_selector().matches(&v.vm.labels) {
                continue;
            }
            *per_node.entry(node).or_default() += 1;
            if let RuleKind::VMNodeAffinity { node_selector, .. } = &rule.kind {
                let labels = c.node(node).map(|i| &c.nodes[i].node.labels);
                if !labels.is_some_and(|l| node_selector.matches(l)) {
                    off_node += 1;
                }
            }
        }
        let total: u32 = per_node.values().sum();
        let broken = match &rule.kind {
            RuleKind::VMAffinity { .. } => total - per_node.values().max().copied().unwrap_or(0),
            RuleKind::VMAntiAffinity { .. } => per_node.values().map(|n| n.saturating_sub(1)).sum(),
            RuleKind::VMNodeAffinity { .. } => off_node,
        };
        match rule.enforcement {
            kubedrs_engine::Enforcement::Required => required += broken,
            kubedrs_engine::Enforcement::Preferred => preferred += broken,
        }
    }
    (required, preferred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_and_stats() {
        assert_eq!(clock(0.0), "00:00");
        assert_eq!(clock(8100.0), "02:15");
        assert_eq!(clock(90000.0), "25:00");
        let s = Stats::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.mean, s.max, s.last, s.p95), (2.5, 4.0, 4.0, 4.0));
        assert_eq!(Stats::of(&[]), Stats::default());
    }
}
