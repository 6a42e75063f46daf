//! A policy run by another program (here Python: the real ProxLB solver, the CP-SAT optimum), one process per
//! run, one JSON line each way per pass (`benches/compare/bridge.py` documents the format).
//!
//! The request carries what the engine sees, already indexed: nodes and VMs in name order, each VM's
//! pool-wide entitlement and the contention weights (so a solver can compute the engine's imbalance exactly),
//! requests, demand, the nodes its CPU model allows, and the migration slots left. The answer is moves
//! (`vm`, `to`) and placements (`vm`, `node`), plus the solver's status and, for the optimum, the proven lower
//! bound of the imbalance.

use super::kube::Scheduler;
use super::{Policy, PolicyError, plan_of, simple_move};
use kubedrs_engine::{Placement, Plan, Reason, Snapshot};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

#[derive(Serialize)]
struct ReqNode<'a> {
    name: &'a str,
    cpu_millis: u64,
    memory_bytes: u64,
    /// Ready: can take VMs.
    accepts: bool,
    /// Counted in the imbalance.
    counted: bool,
    maintenance: bool,
}

#[derive(Serialize)]
struct ReqVm<'a> {
    name: &'a str,
    /// Index of its node (the target while it migrates); `None` while pending.
    node: Option<usize>,
    vcpus: u32,
    memory_bytes: u64,
    req_cpu: u64,
    req_mem: u64,
    demand_cpu: u64,
    demand_mem: u64,
    ent: [f64; 2],
    /// Nodes its CPU model allows (all nodes when unconstrained).
    allowed: Vec<usize>,
    /// Already migrating: must stay where it goes.
    migrating: bool,
    /// May be moved at all (live-migratable, automation not Disabled).
    movable: bool,
}

#[derive(Serialize)]
struct Request<'a> {
    now: u64,
    nodes: Vec<ReqNode<'a>>,
    vms: Vec<ReqVm<'a>>,
    weights: [f64; 2],
    slots_pool: u32,
    slots_out: Vec<u32>,
    slots_in: Vec<u32>,
}

#[derive(Deserialize)]
struct AnsMove {
    vm: String,
    to: String,
}

#[derive(Deserialize)]
struct AnsPlacement {
    vm: String,
    node: String,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    moves: Vec<AnsMove>,
    #[serde(default)]
    placements: Vec<AnsPlacement>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<String>,
    /// The optimum's proven lower bound of the imbalance (standard deviation), when it has one.
    #[serde(default)]
    bound: Option<f64>,
    /// The imbalance of the solution, as the solver computed it.
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    solve_ms: f64,
}

/// What the external solver said at each pass, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassNote {
    pub t: u64,
    pub status: String,
    pub bound: Option<f64>,
    pub value: Option<f64>,
    pub solve_ms: f64,
}

pub struct External {
    label: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub notes: Vec<PassNote>,
}

impl External {
    /// Starts `program args...`; it must answer one line per request line.
    pub fn spawn(label: &str, program: &str, args: &[String]) -> Result<External, String> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {program} {}: {e}", args.join(" ")))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(External { label: label.to_string(), child, stdin, stdout, notes: Vec::new() })
    }

    fn request(snapshot: &Snapshot) -> String {
        let st = kubedrs_engine::view(snapshot);
        let n = st.nodes.len();
        let c = snapshot.pool.concurrency;
        let mut out_used = vec![0u32; n];
        let mut in_used = vec![0u32; n];
        let index = |name: &str| st.nodes.iter().position(|n| n.name == name);
        for m in &snapshot.in_flight {
            if let (Some(s), Some(t)) = (index(&m.source), index(&m.target)) {
                out_used[s] += 1;
                in_used[t] += 1;
            }
        }
        let nodes = st
            .nodes
            .iter()
            .enumerate()
            .map(|(h, node)| ReqNode {
                name: &node.name,
                cpu_millis: node.capacity.cpu_millis,
                memory_bytes: node.capacity.memory_bytes,
                accepts: node.state.accepts_vms(),
                counted: st.counted[h],
                maintenance: node.state.in_maintenance(),
            })
            .collect();
        let vms = st
            .vms
            .iter()
            .enumerate()
            .map(|(v, vm)| ReqVm {
                name: &vm.name,
                node: st.node_of[v],
                vcpus: vm.vcpus,
                memory_bytes: vm.memory_size_bytes,
                req_cpu: vm.cpu.reservation,
                req_mem: vm.memory.reservation,
                demand_cpu: vm.demand.cpu_millis,
                demand_mem: vm.demand.memory_bytes,
                ent: st.entitlement[v],
                allowed: (0..n).filter(|&h| vm.cpu_requirement.allows(st.nodes[h])).collect(),
                migrating: st.in_flight[v],
                movable: vm.live_migratable && vm.automation != kubedrs_engine::VmAutomation::Disabled,
            })
            .collect();
        let req = Request {
            now: snapshot.now,
            nodes,
            vms,
            weights: st.weights,
            slots_pool: c.per_pool.saturating_sub(snapshot.in_flight.len() as u32),
            slots_out: out_used.iter().map(|u| c.per_node_outbound.saturating_sub(*u)).collect(),
            slots_in: in_used
                .iter()
                .map(|u| c.per_node_inbound.map_or(u32::MAX / 2, |l| l.saturating_sub(*u)))
                .collect(),
        };
        serde_json::to_string(&req).expect("a request serializes")
    }
}

impl Drop for External {
    fn drop(&mut self) {
        // Closing stdin ends the bridge's loop; wait for it so no process is left behind.
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Policy for External {
    fn name(&self) -> String {
        self.label.clone()
    }

    /// Solver statuses per pass, the mean solve time, and the mean value and proven bound of the imbalance.
    fn report(&self) -> String {
        let mut counts: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
        for n in &self.notes {
            *counts.entry(n.status.as_str()).or_default() += 1;
        }
        let mut parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let mean = |f: &dyn Fn(&PassNote) -> Option<f64>| {
            let v: Vec<f64> = self.notes.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        if let Some(ms) = mean(&|n| Some(n.solve_ms)) {
            parts.push(format!("solve {ms:.0} ms"));
        }
        if let Some(v) = mean(&|n| n.value) {
            parts.push(format!("value {v:.4}"));
        }
        if let Some(b) = mean(&|n| n.bound) {
            parts.push(format!("bound {b:.4}"));
        }
        parts.join("; ")
    }

    fn plan(&mut self, snapshot: &Snapshot) -> Result<Plan, PolicyError> {
        let line = External::request(snapshot);
        let fail = |e: String| PolicyError::Failed(e);
        writeln!(self.stdin, "{line}").map_err(|e| fail(format!("writing to the bridge: {e}")))?;
        self.stdin.flush().map_err(|e| fail(format!("writing to the bridge: {e}")))?;
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).map_err(|e| fail(format!("reading from the bridge: {e}")))?;
        if answer.trim().is_empty() {
            return Err(fail("the bridge ended without an answer (see its error output above)".into()));
        }
        let a: Answer = serde_json::from_str(&answer).map_err(|e| fail(format!("bad answer {answer:?}: {e}")))?;
        if let Some(e) = a.error {
            return Err(fail(e));
        }
        self.notes.push(PassNote {
            t: snapshot.now,
            status: a.status.clone(),
            bound: a.bound,
            value: a.value,
            solve_ms: a.solve_ms,
        });
        let vm_node: std::collections::HashMap<&str, Option<&str>> =
            snapshot.vms.iter().map(|v| (v.name.as_str(), v.node.as_deref())).collect();
        let node_state: std::collections::HashMap<&str, bool> =
            snapshot.nodes.iter().map(|n| (n.name.as_str(), n.state.in_maintenance())).collect();
        let mut moves = Vec::new();
        for m in a.moves {
            let Some(Some(from)) = vm_node.get(m.vm.as_str()).copied() else { continue };
            if from == m.to {
                continue;
            }
            let reason =
                if node_state.get(from).copied().unwrap_or(false) { Reason::Maintenance } else { Reason::Balance };
            moves.push(simple_move(&m.vm, from, &m.to, reason, format!("{}: {}", self.label, a.status)));
        }
        let mut placements: Vec<Placement> = a
            .placements
            .into_iter()
            .map(|p| Placement {
                vm: p.vm,
                node: p.node,
                why: format!("{}: placement", self.label),
                after: Vec::new(),
                waits: String::new(),
            })
            .collect();
        // Pending VMs the solver did not place: kube-scheduler places them, as it would in KubeVirt.
        let mut sched = Scheduler::new(snapshot);
        for i in sched.vms_by_name() {
            let vm = &snapshot.vms[i];
            if vm.node.is_none()
                && !placements.iter().any(|p| p.vm == vm.name)
                && let Some(h) = sched.pick(vm, None)
            {
                sched.bind(vm, h);
                placements.push(Placement {
                    vm: vm.name.clone(),
                    node: snapshot.nodes[h].name.clone(),
                    why: "kube-scheduler: LeastAllocated on requests".into(),
                    after: Vec::new(),
                    waits: String::new(),
                });
            }
        }
        Ok(plan_of(snapshot, placements, moves, a.status))
    }
}
