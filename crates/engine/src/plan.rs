//! What a pass returns: moves and placements with their reasons, what could not be done and why, and the
//! figures (loads, imbalance, baseline) that status, metrics and reports show.

use serde::{Deserialize, Serialize};

/// Why a VM is moved or placed. The order is the order of work in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The source node is in maintenance.
    Maintenance,
    /// A hard rule (or a CPU model or pool membership) is broken where the VM is.
    Rule,
    /// The reservations on the source node no longer fit its capacity.
    Reservation,
    /// Load balancing.
    Balance,
    /// Initial placement of a new VM.
    Placement,
}

impl Reason {
    /// Label value of `kubedrs.io/reason` and of metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Maintenance => "maintenance",
            Reason::Rule => "rule",
            Reason::Reservation => "reservation",
            Reason::Balance => "balance",
            Reason::Placement => "placement",
        }
    }

    /// Moves that must happen whatever the threshold (no per-pass cap).
    pub fn is_mandatory(self) -> bool {
        !matches!(self, Reason::Balance)
    }
}

/// One live migration the plan asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub vm: String,
    pub from: String,
    pub to: String,
    pub reason: Reason,
    /// Imbalance reduction of this move, in the model, at the time it was chosen.
    pub goodness: f64,
    /// Estimated migration time in seconds.
    pub migration_secs: f64,
    /// Only recommended: the VM's automation is Manual (the pool's level is applied by the actuator).
    pub recommend_only: bool,
    /// Concurrency limits leave no slot for it now: start it when one frees (or at the next pass).
    /// Only moves with nothing to wait for (`after` empty) take a slot.
    pub deferred: bool,
    /// In words, for Events and logs.
    pub why: String,
    /// The moves this one waits for, by VM name: each name is the last move of that VM listed *before* this
    /// one in [`Plan::moves`] (the list is in an order that respects `after`). Start this move only when all of
    /// them have finished; then its target has room for it (requests within allocatable, memory within
    /// capacity, counting migrations in flight on both nodes). A VM moved twice (staged through a node with
    /// room) names itself for its second move. Empty: it may start now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// `after` in words, for status and Events: "after vm-c leaves node-b", "after vm-a reaches node-c".
    /// Empty when `after` is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub waits: String,
}

/// Initial placement of a VM that has no node yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub vm: String,
    pub node: String,
    pub why: String,
    /// The moves this placement waits for, by VM name: its node has room for the VM only once every move of
    /// these VMs in [`Plan::moves`] has finished (a VM moved out of the way to make room for it). Empty: bind
    /// it now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// `after` in words, for status and Events: "after vm-c leaves node-b". Empty when `after` is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub waits: String,
}

/// Why a VM could not be placed or moved where the plan needed it to go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum BlockedReason {
    /// No node has room for its reservation.
    NoCapacity,
    /// A hard rule leaves no node: which rule.
    Rule { rule: String },
    /// Its CPU model runs on no eligible node.
    CpuModel { model: String },
    /// `kubedrs.io/automation: Disabled`.
    AutomationDisabled,
    /// KubeVirt reports it cannot be live-migrated.
    NotLiveMigratable,
    /// Its node is not ready: a live migration needs a running source.
    SourceNotReady,
    /// Already migrating.
    InFlight,
    /// No node of the pool is ready to take VMs.
    NoEligibleNode,
    /// Its recent migrations failed: kubedrs waits before trying again (backoff doubles per failure).
    BackingOff { failures: u32, retry_in_secs: u64 },
    /// Its move is part of a cycle (a swap, a rotation) through nodes that are all too full to take a VM
    /// before another leaves, and no other node has room to stage one of them: the VMs of the cycle, in order.
    Cycle { vms: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    pub vm: String,
    /// Its node, `None` for a VM waiting to be placed.
    pub node: Option<String>,
    /// What the plan wanted: evacuate, fix a rule, place.
    pub wanted: Reason,
    pub reason: BlockedReason,
    pub why: String,
}

/// A hard rule still broken after the plan (the plan could not fix it), or a soft rule it relaxed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleNote {
    pub rule: String,
    pub vms: Vec<String>,
    pub why: String,
}

/// Per-node load after the plan, for status, metrics and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    pub node: String,
    /// Sum of the entitlements of its VMs divided by its capacity, per resource.
    pub cpu: f64,
    pub memory: f64,
    /// The two combined with the pool's contention weights: the quantity whose spread is the imbalance.
    pub combined: f64,
    pub vms: usize,
    /// Counted in the imbalance (ready, in the pool, not in maintenance).
    pub counted: bool,
}

/// The pool's CPU baseline and the VMs it cannot cover.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The resolved baseline model, if the pool has one.
    pub model: Option<String>,
    /// Why there is none (mixed vendors, no common model, unknown names), when `model` is `None`.
    pub why: Option<String>,
    /// VMs whose CPU model pins them to part of the pool, with how many nodes they can use.
    pub pinned: Vec<PinnedVm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedVm {
    pub vm: String,
    pub model: String,
    pub eligible_nodes: usize,
}

/// The result of a pass. Same snapshot, same plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub placements: Vec<Placement>,
    /// In an order that respects every move's `after` (mandatory first, then balancing by goodness, moved
    /// later where a move must wait for another). A VM appears twice when it is staged through a third node.
    pub moves: Vec<Move>,
    pub blocked: Vec<Blocked>,
    pub rule_notes: Vec<RuleNote>,
    pub imbalance_before: f64,
    pub imbalance_after: f64,
    pub target_imbalance: f64,
    /// Largest minus smallest combined load, after the plan.
    pub load_spread_after: f64,
    pub loads: Vec<NodeLoad>,
    pub baseline: Baseline,
    /// Contention weights of CPU and memory used for the combined load.
    pub weights: [f64; 2],
    /// Why balancing stopped where it did, in words.
    pub balance_summary: String,
}

impl Plan {
    pub fn moves_for(&self, reason: Reason) -> impl Iterator<Item = &Move> {
        self.moves.iter().filter(move |m| m.reason == reason)
    }
}

/// A snapshot the engine refuses, naming the field (a path like `vms[3].node`) and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{field}: {message}")]
pub struct InvalidSnapshot {
    pub field: String,
    pub message: String,
}

impl InvalidSnapshot {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidSnapshot { field: field.into(), message: message.into() }
    }
}
