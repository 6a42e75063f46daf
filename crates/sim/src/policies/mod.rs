//! Who decides: the simulator asks a [`Policy`] for the plan of every pass and carries it out the same way
//! whatever the policy (automation, concurrency limits, migration model, metrics). Policies:
//!
//! - [`EnginePolicy`]: kubedrs itself (`kubedrs_engine::plan`);
//! - [`kube::KubeScheduler`]: what a KubeVirt pool gets with no rebalancer: kube-scheduler places new VMs
//!   (LeastAllocated on requests), a node drain live-migrates its VMs to where kube-scheduler puts them, and
//!   nothing is ever moved for load;
//! - [`kube::Descheduler`]: the same plus the descheduler's `LowNodeUtilization` on actual usage, re-implemented
//!   for trace replay (see the module for which semantics are kept);
//! - [`external::External`]: a Python program speaking JSON lines (the real ProxLB solver, the CP-SAT optimum).
//!
//! Every policy's plan carries the same imbalance figure (the engine's measure, computed by [`measure`]) so that
//! runs compare.

pub mod external;
pub mod kube;
pub mod parity;

use kubedrs_engine::{self, InvalidSnapshot, Move, Placement, Plan, Reason, Snapshot};

/// Why a policy gave no plan.
#[derive(Debug)]
pub enum PolicyError {
    /// The snapshot is malformed (the engine's check): a scenario error.
    Invalid(InvalidSnapshot),
    /// The policy itself failed (an external program died, answered nonsense).
    Failed(String),
}

/// Decides what to do at a pass.
pub trait Policy {
    /// Short name for tables (`kubedrs-t3`, `descheduler`, ...).
    fn name(&self) -> String;
    /// The plan for this snapshot: placements of pending VMs and moves (with their reasons).
    fn plan(&mut self, snapshot: &Snapshot) -> Result<Plan, PolicyError>;
    /// Anything the policy wants reported after a run (an external solver's statuses and bounds).
    fn report(&self) -> String {
        String::new()
    }
}

/// kubedrs: the engine, as `kubedrs simulate` has always run it.
pub struct EnginePolicy;

impl Policy for EnginePolicy {
    fn name(&self) -> String {
        "kubedrs".into()
    }

    fn plan(&mut self, snapshot: &Snapshot) -> Result<Plan, PolicyError> {
        kubedrs_engine::plan(snapshot).map_err(PolicyError::Invalid)
    }
}

/// The engine's imbalance (standard deviation of the nodes' combined, contention-weighted load) of a snapshot,
/// and of the same snapshot once `moves` and `placements` are done.
pub fn measure(snapshot: &Snapshot, moves: &[Move], placements: &[Placement]) -> (f64, f64) {
    let before = kubedrs_engine::imbalance(snapshot);
    if moves.is_empty() && placements.is_empty() {
        return (before, before);
    }
    let mut after = snapshot.clone();
    let index: std::collections::HashMap<&str, usize> =
        snapshot.vms.iter().enumerate().map(|(i, v)| (v.name.as_str(), i)).collect();
    for (vm, node) in moves.iter().map(|m| (&m.vm, &m.to)).chain(placements.iter().map(|p| (&p.vm, &p.node))) {
        if let Some(&i) = index.get(vm.as_str()) {
            after.vms[i].node = Some(node.clone());
        }
    }
    (before, kubedrs_engine::imbalance(&after))
}

/// A plan from a policy other than the engine: its moves and placements, with the engine's imbalance figures
/// filled in so that every policy is measured alike.
pub fn plan_of(snapshot: &Snapshot, placements: Vec<Placement>, moves: Vec<Move>, summary: String) -> Plan {
    let (before, after) = measure(snapshot, &moves, &placements);
    let counted = snapshot.nodes.iter().filter(|n| n.state.accepts_vms()).count();
    Plan {
        placements,
        moves,
        imbalance_before: before,
        imbalance_after: after,
        target_imbalance: kubedrs_engine::target_imbalance(snapshot.pool.migration_threshold, counted),
        balance_summary: summary,
        ..Plan::default()
    }
}

/// A move as a baseline policy asks for it (no goodness, no estimate: the simulator times it).
pub fn simple_move(vm: &str, from: &str, to: &str, reason: Reason, why: String) -> Move {
    Move {
        vm: vm.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        reason,
        goodness: 0.0,
        migration_secs: 0.0,
        recommend_only: false,
        deferred: false,
        why,
        after: vec![],
        waits: String::new(),
    }
}
