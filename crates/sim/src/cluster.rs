//! The simulated pool: nodes, VMs, migrations in flight and the move history, and the changes that happen to
//! them (events, placements, migrations starting and ending). It builds the engine's [`Snapshot`] the way the
//! operator would (smoothed demand, in-flight migrations, recent moves) and knows nothing of policy: which plan
//! entries to carry out is decided in [`super::run`].

use super::migration;
use super::scenario::{HostCpu, MigrationModel, Scenario, VmDef};
use super::workload::Workload;
use kubedrs_engine::{
    CpuRequirement, InFlight, Node, NodeState, PastMove, PoolSettings, Reason, Resources, Rule, Snapshot, Vm,
};
use rand::RngExt;
use rand::rngs::ChaCha8Rng;
use std::collections::{HashMap, VecDeque};

/// Moves older than this are dropped from the history given to the engine (its per-day limit looks back 24 h).
const HISTORY_SECS: u64 = 86_400;
/// Demand smoothing windows, as the operator does it: the max of a short and a long mean (rises fast, falls slowly).
const SHORT_WINDOW_SECS: u64 = kubedrs_engine::DEMAND_WINDOWS_SECS.0;
const LONG_WINDOW_SECS: u64 = kubedrs_engine::DEMAND_WINDOWS_SECS.1;

#[derive(Debug, Clone)]
pub struct SimNode {
    pub node: Node,
    /// Maintenance was asked for (`kubedrs.io/maintenance: "true"`).
    pub maintenance: bool,
    pub failed: bool,
    /// What the simulated operator shows as `kubedrs.io/maintenance-state`.
    pub maintenance_state: Option<MaintenanceState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceState {
    Entering,
    Blocked,
    InMaintenance,
}

impl MaintenanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceState::Entering => "Entering",
            MaintenanceState::Blocked => "Blocked",
            MaintenanceState::InMaintenance => "InMaintenance",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VmStatus {
    Running,
    /// Waiting for the engine to place it (powered on, or restarting after its node failed).
    Pending,
    /// Its node failed; it asks for a new node at `restart_at`.
    Down {
        restart_at: u64,
    },
    Off,
}

#[derive(Debug, Clone)]
pub struct SimVm {
    /// Its engine view: `node` is where it runs now (the source while it migrates).
    pub vm: Vm,
    pub status: VmStatus,
    pub host_cpu: Option<HostCpu>,
    pub workload: Workload,
    pub group: String,
    /// Demand now, absolute (millicores, bytes).
    pub demand: (f64, f64),
    /// Recent demand samples for the smoothed demand the engine sees.
    samples: VecDeque<(f64, f64)>,
}

impl SimVm {
    /// Does it want resources (running, or waiting to run)?
    pub fn is_on(&self) -> bool {
        self.status != VmStatus::Off
    }
}

/// How a migration ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed,
    /// Did not converge: KubeVirt aborted it at its completion timeout.
    TimedOut,
    /// Failed for a reason outside the model (the scenario's failure probability).
    Failed,
    /// A node it used failed, or the VM was powered off.
    Aborted(String),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::TimedOut => "timedOut",
            Outcome::Failed => "failed",
            Outcome::Aborted(_) => "aborted",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Migration {
    pub vm: usize,
    pub source: String,
    pub target: String,
    pub reason: Reason,
    pub started: u64,
    /// When it ends (seconds, fractional).
    pub ends_at: f64,
    pub outcome: Outcome,
    /// Bytes sent by the end.
    pub bytes: f64,
}

/// A migration that ended, for metrics and the timeline.
#[derive(Debug, Clone)]
pub struct Ended {
    pub migration: Migration,
    pub at: f64,
}

#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<SimNode>,
    pub vms: Vec<SimVm>,
    pub migrations: Vec<Migration>,
    pub history: Vec<PastMove>,
    pub pool: PoolSettings,
    pub rules: Vec<Rule>,
    model: MigrationModel,
    step: u64,
    vm_index: HashMap<String, usize>,
    rng: ChaCha8Rng,
}

impl Cluster {
    pub fn new(s: &Scenario, rng: ChaCha8Rng) -> Cluster {
        let vms: Vec<SimVm> = s.vms.iter().map(sim_vm).collect();
        let vm_index = vms.iter().enumerate().map(|(i, v)| (v.vm.name.clone(), i)).collect();
        Cluster {
            nodes: s.nodes.iter().cloned().map(sim_node).collect(),
            vms,
            migrations: Vec::new(),
            history: Vec::new(),
            pool: s.pool.clone(),
            rules: s.rules.clone(),
            model: s.migration,
            step: s.step,
            vm_index,
            rng,
        }
    }

    pub fn vm(&self, name: &str) -> Option<usize> {
        self.vm_index.get(name).copied()
    }

    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.node.name == name)
    }

    pub fn add_node(&mut self, node: Node) {
        self.nodes.push(sim_node(node));
    }

    /// VMs running on a node.
    pub fn vms_on(&self, node: &str) -> usize {
        self.vms.iter().filter(|v| v.status == VmStatus::Running && v.vm.node.as_deref() == Some(node)).count()
    }

    pub fn accepts_vms(&self, node: &str) -> bool {
        self.node(node).is_some_and(|i| self.state(i).accepts_vms())
    }

    /// The node's state as the engine sees it.
    pub fn state(&self, i: usize) -> NodeState {
        let n = &self.nodes[i];
        if n.failed {
            NodeState::NotReady
        } else if n.maintenance {
            if self.vms_on(&n.node.name) > 0 { NodeState::EnteringMaintenance } else { NodeState::InMaintenance }
        } else {
            NodeState::Ready
        }
    }

    /// Samples every VM's demand at `t` and keeps the recent samples.
    pub fn sample_demand(&mut self, t: u64, seed: u64) {
        let keep = (LONG_WINDOW_SECS / self.step).max(1) as usize;
        for (key, v) in self.vms.iter_mut().enumerate() {
            let (cpu, mem) = if v.is_on() { v.workload.at(t as f64, seed, key as u64) } else { (0.0, 0.0) };
            v.demand = (cpu * v.vm.vcpus as f64 * 1000.0, mem * v.vm.memory_size_bytes as f64);
            v.samples.push_back(v.demand);
            while v.samples.len() > keep {
                v.samples.pop_front();
            }
        }
    }

    /// The engine's view of the pool at `now`. Returns the snapshot and, for each of its VMs, the index in `vms`.
    pub fn snapshot(&self, now: u64) -> (Snapshot, Vec<usize>) {
        let short = (SHORT_WINDOW_SECS / self.step).max(1) as usize;
        let mut index = Vec::new();
        let mut vms = Vec::new();
        for (i, v) in self.vms.iter().enumerate() {
            if !matches!(v.status, VmStatus::Running | VmStatus::Pending) {
                continue;
            }
            let mut vm = v.vm.clone();
            let mean = |n: usize| {
                let n = n.min(v.samples.len()).max(1);
                let (c, m) = v.samples.iter().rev().take(n).fold((0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1));
                (c / n as f64, m / n as f64)
            };
            let (s, l) = (mean(short), mean(v.samples.len()));
            vm.demand = Resources::new(s.0.max(l.0).round() as u64, s.1.max(l.1).round() as u64);
            vms.push(vm);
            index.push(i);
        }
        let nodes =
            (0..self.nodes.len()).map(|i| Node { state: self.state(i), ..self.nodes[i].node.clone() }).collect();
        let in_flight = self
            .migrations
            .iter()
            .map(|m| InFlight {
                vm: self.vms[m.vm].vm.name.clone(),
                source: m.source.clone(),
                target: m.target.clone(),
            })
            .collect();
        let since = now.saturating_sub(HISTORY_SECS);
        let history = self.history.iter().filter(|h| h.at >= since).cloned().collect();
        let snapshot =
            Snapshot { pool: self.pool.clone(), nodes, vms, rules: self.rules.clone(), in_flight, history, now };
        (snapshot, index)
    }

    /// Starts VM `vm` on `node` (a placement). The caller checked the VM is pending and the node accepts VMs.
    pub fn place(&mut self, vm: usize, node: &str) {
        let host = self.node(node).and_then(|i| self.nodes[i].node.host_model.clone());
        let v = &mut self.vms[vm];
        v.vm.node = Some(node.to_string());
        v.status = VmStatus::Running;
        // host-model and host-passthrough take the CPU of the node they start on.
        if let (Some(kind), Some(host)) = (v.host_cpu, host) {
            v.vm.cpu_requirement = match kind {
                HostCpu::Model => CpuRequirement::HostModel(host),
                HostCpu::Passthrough => CpuRequirement::HostPassthrough(host),
            };
        }
    }

    pub fn migrating(&self, vm: usize) -> bool {
        self.migrations.iter().any(|m| m.vm == vm)
    }

    /// Starts a live migration at `t`; its duration and outcome are drawn now (seeded, so runs repeat).
    pub fn start_migration(&mut self, vm: usize, target: &str, reason: Reason, t: u64) -> &Migration {
        let v = &self.vms[vm].vm;
        let est = migration::estimate(&self.model, v.memory_size_bytes, v.dirty_rate_bytes_per_sec);
        // Always draw, so that the sequence of draws does not depend on earlier outcomes.
        let fails = self.rng.random_bool(self.model.failure_probability.clamp(0.0, 1.0));
        let at: f64 = self.rng.random();
        let (secs, bytes, outcome) = if !est.converges {
            (est.secs, est.bytes, Outcome::TimedOut)
        } else if fails {
            (est.secs * at, est.bytes * at, Outcome::Failed)
        } else {
            (est.secs, est.bytes, Outcome::Completed)
        };
        self.migrations.push(Migration {
            vm,
            source: v.node.clone().unwrap_or_default(),
            target: target.to_string(),
            reason,
            started: t,
            ends_at: t as f64 + secs,
            outcome,
            bytes,
        });
        &self.migrations[self.migrations.len() - 1]
    }

    /// Ends the migrations due by `t`, in the order they end.
    pub fn finish_migrations(&mut self, t: u64) -> Vec<Ended> {
        let mut due: Vec<Migration> = Vec::new();
        self.migrations.retain(|m| {
            if m.ends_at <= t as f64 {
                due.push(m.clone());
                false
            } else {
                true
            }
        });
        due.sort_by(|a, b| a.ends_at.total_cmp(&b.ends_at).then(a.vm.cmp(&b.vm)));
        let mut ended = Vec::new();
        for m in due {
            let succeeded = m.outcome == Outcome::Completed;
            let v = &mut self.vms[m.vm];
            if succeeded {
                v.vm.node = Some(m.target.clone());
            }
            // Failures go to the history too: the engine backs the VM off instead of retrying every pass.
            self.history.push(PastMove {
                vm: v.vm.name.clone(),
                from: m.source.clone(),
                to: m.target.clone(),
                at: m.ends_at.ceil() as u64,
                succeeded,
            });
            let at = m.ends_at;
            ended.push(Ended { migration: m, at });
        }
        let horizon = t.saturating_sub(2 * HISTORY_SECS);
        self.history.retain(|h| h.at >= horizon);
        ended
    }

    /// Aborts the migrations that `pred` selects (a node failed, a VM was powered off).
    pub fn abort_migrations(&mut self, t: u64, why: &str, pred: impl Fn(&Migration) -> bool) -> Vec<Ended> {
        let mut ended = Vec::new();
        self.migrations.retain(|m| {
            if pred(m) {
                let done = ((t as f64 - m.started as f64) / (m.ends_at - m.started as f64).max(1e-9)).clamp(0.0, 1.0);
                let mut m = m.clone();
                m.bytes *= done;
                m.outcome = Outcome::Aborted(why.to_string());
                m.ends_at = t as f64;
                ended.push(Ended { migration: m, at: t as f64 });
                false
            } else {
                true
            }
        });
        ended
    }

    /// A node fails: its VMs go down and restart elsewhere after `delay`; migrations through it end.
    pub fn fail_node(&mut self, node: &str, t: u64, delay: u64) -> (usize, Vec<Ended>) {
        if let Some(i) = self.node(node) {
            self.nodes[i].failed = true;
        }
        let ended = self.abort_migrations(t, &format!("node {node} failed"), |m| m.source == node || m.target == node);
        let mut down = 0;
        for v in &mut self.vms {
            if v.status == VmStatus::Running && v.vm.node.as_deref() == Some(node) {
                v.status = VmStatus::Down { restart_at: t + delay };
                v.vm.node = None;
                down += 1;
            }
        }
        (down, ended)
    }

    /// Down VMs whose restart time has come ask for a node. Returns their names.
    pub fn restart_due(&mut self, t: u64) -> Vec<String> {
        let mut names = Vec::new();
        for v in &mut self.vms {
            if let VmStatus::Down { restart_at } = v.status
                && restart_at <= t
            {
                v.status = VmStatus::Pending;
                names.push(v.vm.name.clone());
            }
        }
        names
    }

    pub fn power_off(&mut self, vm: usize, t: u64) -> Vec<Ended> {
        let name = self.vms[vm].vm.name.clone();
        let ended = self.abort_migrations(t, &format!("{name} was powered off"), |m| m.vm == vm);
        let v = &mut self.vms[vm];
        v.status = VmStatus::Off;
        v.vm.node = None;
        ended
    }
}

fn sim_node(node: Node) -> SimNode {
    SimNode { node, maintenance: false, failed: false, maintenance_state: None }
}

fn sim_vm(d: &VmDef) -> SimVm {
    let status = match (&d.vm.node, d.powered_on) {
        (_, false) => VmStatus::Off,
        (Some(_), true) => VmStatus::Running,
        (None, true) => VmStatus::Pending,
    };
    let mut vm = d.vm.clone();
    if !d.powered_on {
        vm.node = None;
    }
    SimVm {
        vm,
        status,
        host_cpu: d.host_cpu,
        workload: d.workload.clone(),
        group: d.group.clone(),
        demand: (0.0, 0.0),
        samples: VecDeque::new(),
    }
}
