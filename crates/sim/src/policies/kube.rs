//! What KubeVirt users run today, re-implemented for trace replay (no API server: decisions only).
//!
//! **kube-scheduler** (placement only): a new or evicted VM's pod goes to the Ready node where its requests fit,
//! its CPU model label is present (KubeVirt adds a node selector), and the `NodeResourcesFit` plugin's
//! `LeastAllocated` score is highest: per resource `(allocatable - requested) * 100 / allocatable` (integer, as
//! kube-scheduler computes it), CPU and memory weighted 1:1, `requested` including the new pod and every pod
//! already bound there (a migration's target pod holds its requests on the target while it runs, the source
//! pod on the source). Ties go to the first node by name (kube-scheduler picks one at random). A migration
//! target pod never lands on its source (KubeVirt's anti-affinity). The scheduler sees requests only, never
//! usage: in KubeVirt a VM requests vCPUs/10 of CPU.
//!
//! **Node drain** (maintenance): every VM on a node in maintenance is evicted, and KubeVirt turns the
//! eviction into a live migration whose target kube-scheduler picks.
//!
//! **descheduler `LowNodeUtilization`** (the `balance` plugin), kept semantics (kubernetes-sigs/descheduler,
//! `pkg/framework/plugins/nodeutilization`):
//! - per node and resource, usage as a percentage of allocatable: here actual usage (the VMs' demand, as the
//!   metrics-based mode reads it), and `pods` as the count over 110 (the kubelet's default `maxPods`);
//! - a node is *underutilized* when every resource is at or below `thresholds`, *overutilized* when any is
//!   above `targetThresholds`; with `useDeviationThresholds` the thresholds are the mean usage over the nodes
//!   minus / plus the given percentages (clamped to 0..100);
//! - nothing happens when no node is underutilized, when at most `numberOfNodes` are, when all are, or when
//!   none is overutilized; unschedulable nodes are never underutilized;
//! - overutilized nodes are taken in decreasing order of their summed usage percentages; their pods are
//!   evicted while the node is still above `targetThresholds` and the underutilized nodes still have room up
//!   to `targetThresholds` for every resource (the room shrinks by each evicted pod's usage);
//! - eviction limits: here one per overloaded node per cycle and `evictionLimits.total` = 5 (the KubeVirt
//!   docs set it to the migration limits), counting migrations still running (evictions in background);
//! - a VM already migrating is not evicted (KubeVirt's migration-aware evictor); VMs that are not live
//!   migratable or excluded are not evicted; among equal pods the first by name goes (the descheduler sorts
//!   by priority and QoS class only, all VMs here are alike);
//! - the descheduler never chooses the target: kube-scheduler does (LeastAllocated on requests, above).

use super::{Policy, PolicyError, plan_of, simple_move};
use kubedrs_engine::{Move, Node, Placement, Plan, Reason, Snapshot, Vm, VmAutomation};
use std::collections::{HashMap, HashSet};

/// The kubelet's default `maxPods`: the `pods` resource of `LowNodeUtilization`.
pub const MAX_PODS: f64 = 110.0;

/// kube-scheduler's view of a pool: requests bound per node.
pub struct Scheduler<'a> {
    pub snap: &'a Snapshot,
    /// Node indices into `snap.nodes`, in name order.
    pub order: Vec<usize>,
    /// Requested (CPU millicores, memory bytes) per node of `snap.nodes`.
    pub requested: Vec<[u64; 2]>,
    pub node_index: HashMap<&'a str, usize>,
    pub migrating: HashSet<&'a str>,
}

impl<'a> Scheduler<'a> {
    pub fn new(snap: &'a Snapshot) -> Self {
        let node_index: HashMap<&str, usize> =
            snap.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        let mut order: Vec<usize> = (0..snap.nodes.len()).collect();
        order.sort_by(|&a, &b| snap.nodes[a].name.cmp(&snap.nodes[b].name));
        let mut requested = vec![[0u64; 2]; snap.nodes.len()];
        let vm_index: HashMap<&str, usize> = snap.vms.iter().enumerate().map(|(i, v)| (v.name.as_str(), i)).collect();
        for v in &snap.vms {
            if let Some(&h) = v.node.as_deref().and_then(|n| node_index.get(n)) {
                requested[h][0] += v.cpu.reservation;
                requested[h][1] += v.memory.reservation;
            }
        }
        let mut migrating = HashSet::new();
        for m in &snap.in_flight {
            if let (Some(&v), Some(&t)) = (vm_index.get(m.vm.as_str()), node_index.get(m.target.as_str())) {
                requested[t][0] += snap.vms[v].cpu.reservation;
                requested[t][1] += snap.vms[v].memory.reservation;
                migrating.insert(m.vm.as_str());
            }
        }
        Scheduler { snap, order, requested, node_index, migrating }
    }

    /// `LeastAllocated` score of `vm` on node `h` (0..100), or `None` where it cannot go.
    pub fn score(&self, vm: &Vm, h: usize) -> Option<u64> {
        let n: &Node = &self.snap.nodes[h];
        if !n.state.accepts_vms() || !vm.cpu_requirement.allows(n) {
            return None;
        }
        let cap = [n.capacity.cpu_millis, n.capacity.memory_bytes];
        let req = [self.requested[h][0] + vm.cpu.reservation, self.requested[h][1] + vm.memory.reservation];
        if req[0] > cap[0] || req[1] > cap[1] {
            return None;
        }
        let s = |r: usize| ((cap[r] - req[r]) as u128 * 100 / cap[r].max(1) as u128) as u64;
        Some((s(0) + s(1)) / 2)
    }

    /// Where kube-scheduler binds `vm`'s pod (never on `exclude`).
    pub fn pick(&self, vm: &Vm, exclude: Option<usize>) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for &h in &self.order {
            if Some(h) == exclude {
                continue;
            }
            if let Some(s) = self.score(vm, h)
                && best.is_none_or(|(b, _)| s > b)
            {
                best = Some((s, h));
            }
        }
        best.map(|(_, h)| h)
    }

    /// Binds `vm`'s pod on `h` (its requests count there from now on).
    pub fn bind(&mut self, vm: &Vm, h: usize) {
        self.requested[h][0] += vm.cpu.reservation;
        self.requested[h][1] += vm.memory.reservation;
    }

    /// Can this VM be evicted into a live migration?
    pub fn evictable(&self, vm: &Vm) -> bool {
        vm.live_migratable && vm.automation != VmAutomation::Disabled && !self.migrating.contains(vm.name.as_str())
    }

    /// VM indices into `snap.vms`, in name order.
    pub fn vms_by_name(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.snap.vms.len()).collect();
        v.sort_by(|&a, &b| self.snap.vms[a].name.cmp(&self.snap.vms[b].name));
        v
    }
}

/// Placements of pending VMs and drain moves, as kube-scheduler and KubeVirt's eviction handling do them.
fn place_and_drain(sched: &mut Scheduler) -> (Vec<Placement>, Vec<Move>) {
    let snap = sched.snap;
    let (mut placements, mut moves) = (Vec::new(), Vec::new());
    for i in sched.vms_by_name() {
        let vm = &snap.vms[i];
        match vm.node.as_deref() {
            None => {
                if let Some(h) = sched.pick(vm, None) {
                    sched.bind(vm, h);
                    placements.push(Placement {
                        vm: vm.name.clone(),
                        node: snap.nodes[h].name.clone(),
                        why: "kube-scheduler: LeastAllocated on requests".into(),
                        after: Vec::new(),
                        waits: String::new(),
                    });
                }
            }
            Some(node) => {
                let Some(&src) = sched.node_index.get(node) else { continue };
                if !snap.nodes[src].state.in_maintenance() || !sched.evictable(vm) {
                    continue;
                }
                if let Some(h) = sched.pick(vm, Some(src)) {
                    sched.bind(vm, h);
                    moves.push(simple_move(
                        &vm.name,
                        node,
                        &snap.nodes[h].name,
                        Reason::Maintenance,
                        "drain: evicted, kube-scheduler picked the target".into(),
                    ));
                }
            }
        }
    }
    (placements, moves)
}

/// kube-scheduler alone: places, drains nodes in maintenance, never moves anything for load.
pub struct KubeScheduler;

impl Policy for KubeScheduler {
    fn name(&self) -> String {
        "kube-scheduler".into()
    }

    fn plan(&mut self, snapshot: &Snapshot) -> Result<Plan, PolicyError> {
        let mut sched = Scheduler::new(snapshot);
        let (placements, moves) = place_and_drain(&mut sched);
        Ok(plan_of(snapshot, placements, moves, "placement only".into()))
    }
}

/// A resource `LowNodeUtilization` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Res {
    Cpu,
    Memory,
    Pods,
}

/// The descheduler's `LowNodeUtilization`, its evictions turned into live migrations that kube-scheduler targets.
#[derive(Debug, Clone)]
pub struct Descheduler {
    pub label: String,
    /// `thresholds` (underutilized at or below), percent; deviations below the mean with `deviation`.
    pub thresholds: Vec<(Res, f64)>,
    /// `targetThresholds` (overutilized above), percent; deviations above the mean with `deviation`.
    pub target_thresholds: Vec<(Res, f64)>,
    /// `useDeviationThresholds`.
    pub deviation: bool,
    /// `numberOfNodes`: act only when more nodes than this are underutilized.
    pub number_of_nodes: usize,
    /// Evictions per overloaded node per cycle.
    pub per_node: u32,
    /// Evictions in the pool at once (migrations still running count), `evictionLimits.total`.
    pub total: u32,
}

impl Descheduler {
    /// The `LongLifecycle` profile as the KubeVirt (OKD Virtualization) docs describe it: underutilized below
    /// 20% of CPU, memory and pods, overutilized above 50% of any; here on actual usage.
    pub fn long_lifecycle() -> Self {
        Descheduler {
            label: "descheduler-20/50".into(),
            thresholds: vec![(Res::Cpu, 20.0), (Res::Memory, 20.0), (Res::Pods, 20.0)],
            target_thresholds: vec![(Res::Cpu, 50.0), (Res::Memory, 50.0), (Res::Pods, 50.0)],
            deviation: false,
            number_of_nodes: 0,
            per_node: 1,
            total: 5,
        }
    }

    /// The `KubeVirtRelieveAndMigrate` profile as documented with `devDeviationThresholds: AsymmetricLow`
    /// (0%:10%) and a CPU utilization profile: below the mean CPU usage is underutilized, more than 10 points
    /// above it is overutilized.
    pub fn relieve_and_migrate() -> Self {
        Descheduler {
            label: "descheduler-relieve".into(),
            thresholds: vec![(Res::Cpu, 0.0)],
            target_thresholds: vec![(Res::Cpu, 10.0)],
            deviation: true,
            number_of_nodes: 0,
            per_node: 1,
            total: 5,
        }
    }

    /// The evictions of one cycle (VM index, source node, target node), given the scheduler's state (which it
    /// updates as kube-scheduler binds the target pods).
    pub fn evictions(&self, sched: &mut Scheduler) -> Vec<(usize, usize, usize)> {
        let snap = sched.snap;
        let nodes: Vec<usize> = sched.order.iter().copied().filter(|&h| snap.nodes[h].state.accepts_vms()).collect();
        if nodes.is_empty() {
            return vec![];
        }
        let mut on_node: HashMap<usize, Vec<usize>> = HashMap::new();
        for i in sched.vms_by_name() {
            if let Some(&h) = snap.vms[i].node.as_deref().and_then(|n| sched.node_index.get(n)) {
                on_node.entry(h).or_default().push(i);
            }
        }
        let res_list: Vec<Res> = self.target_thresholds.iter().map(|(r, _)| *r).collect();
        let cap = |h: usize, r: Res| match r {
            Res::Cpu => snap.nodes[h].capacity.cpu_millis as f64,
            Res::Memory => snap.nodes[h].capacity.memory_bytes as f64,
            Res::Pods => MAX_PODS,
        };
        let vm_use = |i: usize, r: Res| match r {
            Res::Cpu => snap.vms[i].demand.cpu_millis as f64,
            Res::Memory => snap.vms[i].demand.memory_bytes as f64,
            Res::Pods => 1.0,
        };
        // Absolute usage per node and resource.
        let mut usage: HashMap<(usize, usize), f64> = HashMap::new();
        for &h in &nodes {
            for (k, &r) in res_list.iter().enumerate() {
                let u = on_node.get(&h).map_or(0.0, |vs| vs.iter().map(|&i| vm_use(i, r)).sum());
                usage.insert((h, k), u);
            }
        }
        let pct =
            |usage: &HashMap<(usize, usize), f64>, h: usize, k: usize| usage[&(h, k)] * 100.0 / cap(h, res_list[k]);
        let threshold_of = |list: &[(Res, f64)], r: Res| list.iter().find(|(x, _)| *x == r).map(|(_, v)| *v);
        // Low and high thresholds per resource, percent.
        let mut low = vec![0.0; res_list.len()];
        let mut high = vec![0.0; res_list.len()];
        for (k, &r) in res_list.iter().enumerate() {
            let lo = threshold_of(&self.thresholds, r).unwrap_or(100.0);
            let hi = threshold_of(&self.target_thresholds, r).unwrap_or(100.0);
            if self.deviation {
                let mean = nodes.iter().map(|&h| pct(&usage, h, k)).sum::<f64>() / nodes.len() as f64;
                low[k] = (mean - lo).clamp(0.0, 100.0);
                high[k] = (mean + hi).clamp(0.0, 100.0);
            } else {
                low[k] = lo;
                high[k] = hi;
            }
        }
        let is_low =
            |usage: &HashMap<(usize, usize), f64>, h: usize| (0..res_list.len()).all(|k| pct(usage, h, k) <= low[k]);
        let is_high =
            |usage: &HashMap<(usize, usize), f64>, h: usize| (0..res_list.len()).any(|k| pct(usage, h, k) > high[k]);
        let low_nodes: Vec<usize> = nodes.iter().copied().filter(|&h| is_low(&usage, h)).collect();
        let mut high_nodes: Vec<usize> =
            nodes.iter().copied().filter(|&h| !low_nodes.contains(&h) && is_high(&usage, h)).collect();
        if low_nodes.is_empty()
            || low_nodes.len() <= self.number_of_nodes
            || low_nodes.len() == nodes.len()
            || high_nodes.is_empty()
        {
            return vec![];
        }
        // Room left on the underutilized nodes up to the target thresholds.
        let mut room: Vec<f64> = (0..res_list.len())
            .map(|k| low_nodes.iter().map(|&h| high[k] * cap(h, res_list[k]) / 100.0 - usage[&(h, k)]).sum())
            .collect();
        let total_pct =
            |usage: &HashMap<(usize, usize), f64>, h: usize| (0..res_list.len()).map(|k| pct(usage, h, k)).sum::<f64>();
        high_nodes.sort_by(|&a, &b| total_pct(&usage, b).total_cmp(&total_pct(&usage, a)).then(a.cmp(&b)));

        let mut in_progress = snap.in_flight.len() as u32;
        let mut out = Vec::new();
        for src in high_nodes {
            let mut here = 0;
            for &i in on_node.get(&src).map_or(&[][..], |v| v.as_slice()) {
                if in_progress >= self.total || here >= self.per_node {
                    break;
                }
                if !is_high(&usage, src) || room.iter().any(|&r| r <= 0.0) {
                    break;
                }
                let vm = &snap.vms[i];
                if !sched.evictable(vm) {
                    continue;
                }
                // Evicted: KubeVirt starts a migration, kube-scheduler binds the target pod (if it can).
                let Some(target) = sched.pick(vm, Some(src)) else { continue };
                sched.bind(vm, target);
                for (k, &r) in res_list.iter().enumerate() {
                    *usage.get_mut(&(src, k)).expect("usage of a counted node") -= vm_use(i, r);
                    room[k] -= vm_use(i, r);
                }
                out.push((i, src, target));
                here += 1;
                in_progress += 1;
            }
        }
        out
    }
}

impl Policy for Descheduler {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn plan(&mut self, snapshot: &Snapshot) -> Result<Plan, PolicyError> {
        let mut sched = Scheduler::new(snapshot);
        let (placements, mut moves) = place_and_drain(&mut sched);
        for (i, src, target) in self.evictions(&mut sched) {
            moves.push(simple_move(
                &snapshot.vms[i].name,
                &snapshot.nodes[src].name,
                &snapshot.nodes[target].name,
                Reason::Balance,
                "LowNodeUtilization: evicted from an overutilized node, kube-scheduler picked the target".into(),
            ));
        }
        let n = moves.len();
        Ok(plan_of(snapshot, placements, moves, format!("{n} evictions")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubedrs_engine::{InFlight, NodeState};

    fn names(snap: &Snapshot, ev: &[(usize, usize, usize)]) -> Vec<(String, String, String)> {
        ev.iter()
            .map(|&(v, s, t)| (snap.vms[v].name.clone(), snap.nodes[s].name.clone(), snap.nodes[t].name.clone()))
            .collect()
    }

    #[test]
    fn least_allocated_picks_the_node_with_most_free_requests_and_ignores_usage() {
        // (case, nodes as (name, cores, GiB, state), VMs already bound as (node, req cores, req GiB, demand cores),
        //  new VM (req cores, GiB, model), expected node)
        type NodeSpec = (&'static str, u64, u64, NodeState);
        type Bound = (&'static str, f64, f64, f64);
        type NewVm = (f64, f64, Option<&'static str>);
        type Case = (&'static str, Vec<NodeSpec>, Vec<Bound>, NewVm, Option<&'static str>);
        let cases: Vec<Case> = vec![
            (
                "emptier by requests wins even when it is busier by usage",
                vec![("a", 16, 64, NodeState::Ready), ("b", 16, 64, NodeState::Ready)],
                vec![("a", 1.0, 8.0, 0.5), ("b", 1.0, 32.0, 0.1), ("a", 0.1, 1.0, 15.0)],
                (0.2, 4.0, None),
                Some("a"),
            ),
            (
                "ties go to the first by name",
                vec![("b", 16, 64, NodeState::Ready), ("a", 16, 64, NodeState::Ready)],
                vec![],
                (0.2, 4.0, None),
                Some("a"),
            ),
            (
                "a node where the request does not fit is filtered out",
                vec![("a", 16, 64, NodeState::Ready), ("b", 16, 16, NodeState::Ready)],
                vec![("a", 0.0, 60.0, 0.0)],
                (0.2, 8.0, None),
                Some("b"),
            ),
            (
                "nodes not Ready are filtered out",
                vec![("a", 16, 64, NodeState::Cordoned), ("b", 16, 64, NodeState::Ready)],
                vec![("b", 8.0, 32.0, 0.0)],
                (0.2, 4.0, None),
                Some("b"),
            ),
            ("nothing fits: no node", vec![("a", 16, 8, NodeState::Ready)], vec![], (0.2, 16.0, None), None),
        ];
        for (case, nodes, bound, (c, m, _), want) in cases {
            let nodes: Vec<Node> =
                nodes.into_iter().map(|(n, cores, gib, st)| Node::test(n).cores(cores).gib(gib).state(st)).collect();
            let vms: Vec<Vm> = bound
                .iter()
                .enumerate()
                .map(|(i, (n, rc, rm, d))| Vm::test(&format!("v{i}")).on(n).reserve(*rc, *rm).demand(*d, 1.0))
                .collect();
            let snap = Snapshot::test(nodes, vms);
            let sched = Scheduler::new(&snap);
            let new = Vm::test("new").reserve(c, m);
            let got = sched.pick(&new, None).map(|h| snap.nodes[h].name.as_str());
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn cpu_model_and_migration_targets_count() {
        let snap = Snapshot {
            in_flight: vec![InFlight { vm: "m".into(), source: "old".into(), target: "new1".into() }],
            ..Snapshot::test(
                vec![
                    Node::test("old").generation("Skylake-Server-noTSX-IBRS"),
                    Node::test("new1").generation("Icelake-Server-noTSX"),
                    Node::test("new2").generation("Icelake-Server-noTSX"),
                ],
                vec![Vm::test("m").on("old").reserve(1.0, 32.0)],
            )
        };
        let sched = Scheduler::new(&snap);
        // The migrating VM's target pod holds 32 GiB on new1, so new2 is emptier; the old node lacks the model.
        let vm = Vm::test("x").model("Icelake-Server-noTSX").reserve(0.2, 4.0);
        assert_eq!(sched.pick(&vm, None).map(|h| snap.nodes[h].name.as_str()), Some("new2"));
        assert!(!sched.evictable(&snap.vms[0]), "a migrating VM is not evicted again");
    }

    /// Builds a pool: nodes of 10 cores / 100 GiB, VMs given as (node, demand cores, demand GiB).
    fn pool(nodes: &[&str], vms: &[(&str, f64, f64)]) -> Snapshot {
        Snapshot::test(
            nodes.iter().map(|n| Node::test(n).cores(10).gib(100)).collect(),
            vms.iter()
                .enumerate()
                .map(|(i, (n, c, m))| Vm::test(&format!("vm{i:02}")).on(n).reserve(0.1, 1.0).demand(*c, *m))
                .collect(),
        )
    }

    #[test]
    fn low_node_utilization_decisions() {
        // (case, policy, nodes, VMs (node, cores, GiB), expected evictions (vm, from, to))
        let cpu_only = |low: f64, high: f64| Descheduler {
            thresholds: vec![(Res::Cpu, low)],
            target_thresholds: vec![(Res::Cpu, high)],
            ..Descheduler::long_lifecycle()
        };
        type Case = (
            &'static str,
            Descheduler,
            Vec<&'static str>,
            Vec<(&'static str, f64, f64)>,
            Vec<(&'static str, &'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "one hot node, one cold: one eviction, to where kube-scheduler puts it",
                cpu_only(20.0, 50.0),
                vec!["a", "b", "c"],
                vec![("a", 4.0, 1.0), ("a", 4.0, 1.0), ("b", 1.0, 1.0), ("c", 3.0, 1.0)],
                // b is below 20% CPU, a above 50%; the target is by requests: b and c hold one request each,
                // a's VM goes to b (first by name among equal scores).
                vec![("vm00", "a", "b")],
            ),
            (
                "no underutilized node: nothing, however hot a node is",
                cpu_only(20.0, 50.0),
                vec!["a", "b"],
                vec![("a", 9.0, 1.0), ("b", 3.0, 1.0)],
                vec![],
            ),
            (
                "no overutilized node: nothing",
                cpu_only(20.0, 50.0),
                vec!["a", "b"],
                vec![("a", 4.0, 1.0), ("b", 1.0, 1.0)],
                vec![],
            ),
            (
                "all nodes underutilized: nothing",
                cpu_only(60.0, 50.0),
                vec!["a", "b"],
                vec![("a", 5.5, 1.0), ("b", 1.0, 1.0)],
                vec![],
            ),
            (
                "the target is kube-scheduler's, not the cold node: it may go to another busy node",
                cpu_only(20.0, 50.0),
                vec!["a", "b", "c"],
                // b is cold by usage but full of requests; c is busy (45%) with few requests.
                vec![
                    ("a", 3.0, 1.0),
                    ("a", 3.0, 1.0),
                    ("b", 0.5, 1.0),
                    ("b", 0.5, 1.0),
                    ("b", 0.5, 1.0),
                    ("c", 4.5, 1.0),
                ],
                vec![("vm00", "a", "c")],
            ),
            (
                "all three resources: a node is low only if every resource is low (memory keeps b from being low)",
                Descheduler::long_lifecycle(),
                vec!["a", "b"],
                vec![("a", 6.0, 10.0), ("b", 1.0, 30.0)],
                vec![],
            ),
            (
                "one eviction per overloaded node per cycle, hottest node first",
                cpu_only(20.0, 50.0),
                vec!["a", "b", "c", "d"],
                vec![
                    ("a", 3.0, 1.0),
                    ("a", 3.0, 1.0),
                    ("b", 4.0, 1.0),
                    ("b", 4.0, 1.0),
                    ("c", 0.5, 1.0),
                    ("d", 0.5, 1.0),
                ],
                vec![("vm02", "b", "c"), ("vm00", "a", "d")],
            ),
            (
                "deviation thresholds (AsymmetricLow): below the mean is low, 10 points above it is high",
                Descheduler::relieve_and_migrate(),
                vec!["a", "b", "c"],
                // usage 70%, 50%, 30%: mean 50, high above 60: a; low at or below 50: b and c.
                vec![("a", 7.0, 1.0), ("b", 5.0, 1.0), ("c", 3.0, 1.0)],
                vec![("vm00", "a", "b")],
            ),
            (
                "deviation: a pool within 10 points of its mean is left alone",
                Descheduler::relieve_and_migrate(),
                vec!["a", "b", "c"],
                vec![("a", 5.5, 1.0), ("b", 5.0, 1.0), ("c", 4.5, 1.0)],
                vec![],
            ),
            (
                "the underutilized nodes have no room left up to the target: nothing",
                cpu_only(20.0, 20.0),
                vec!["a", "b"],
                vec![("a", 6.0, 1.0), ("b", 2.0, 1.0)],
                vec![],
            ),
        ];
        for (case, policy, nodes, vms, want) in cases {
            let snap = pool(&nodes, &vms);
            let mut sched = Scheduler::new(&snap);
            let got = names(&snap, &policy.evictions(&mut sched));
            let want: Vec<(String, String, String)> =
                want.iter().map(|(v, s, t)| (v.to_string(), s.to_string(), t.to_string())).collect();
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn eviction_limit_counts_running_migrations() {
        let mut snap = pool(&["a", "b", "c"], &[("a", 4.0, 1.0), ("a", 4.0, 1.0), ("b", 0.5, 1.0), ("c", 0.5, 1.0)]);
        snap.in_flight =
            (0..5).map(|i| InFlight { vm: format!("x{i}"), source: "b".into(), target: "c".into() }).collect();
        let policy = Descheduler {
            thresholds: vec![(Res::Cpu, 20.0)],
            target_thresholds: vec![(Res::Cpu, 50.0)],
            ..Descheduler::long_lifecycle()
        };
        let mut sched = Scheduler::new(&snap);
        assert!(policy.evictions(&mut sched).is_empty());
    }

    #[test]
    fn kube_scheduler_places_and_drains_but_never_balances() {
        let snap = Snapshot::test(
            vec![Node::test("a").cores(10), Node::test("b").cores(10).maintenance(), Node::test("c").cores(10)],
            vec![
                Vm::test("hot1").on("a").demand(9.0, 1.0),
                Vm::test("hot2").on("a").demand(9.0, 1.0),
                Vm::test("m").on("b"),
                Vm::test("new"),
            ],
        );
        let plan = KubeScheduler.plan(&snap).expect("a plan");
        let moves: Vec<(&str, &str, &str, Reason)> =
            plan.moves.iter().map(|m| (m.vm.as_str(), m.from.as_str(), m.to.as_str(), m.reason)).collect();
        assert_eq!(moves, vec![("m", "b", "c", Reason::Maintenance)]);
        let placed: Vec<(&str, &str)> = plan.placements.iter().map(|p| (p.vm.as_str(), p.node.as_str())).collect();
        // c holds m's target pod (1 GiB) after the drain; a holds two VMs: c is still emptier by requests.
        assert_eq!(placed, vec![("new", "c")]);
        assert!(plan.imbalance_before > 0.0);
    }
}
