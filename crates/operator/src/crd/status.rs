//! The HostPool status kubedrs writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types of a HostPool.
pub mod condition {
    /// The pool is observed and planned without error.
    pub const READY: &str = "Ready";
    /// The spec is valid; `False` with reason `InvalidSpec` and a message naming the field otherwise.
    pub const VALID: &str = "Valid";
    /// kubedrs runs but cannot do all it should: nodes NotReady, blocked VMs, nodes claimed by two pools,
    /// failed migrations, an unusable baseline model (the reason names the most pressing one).
    pub const DEGRADED: &str = "Degraded";
    /// `spec.paused` is true.
    pub const PAUSED: &str = "Paused";
    /// Reason of `Valid=False`.
    pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
    /// Reasons of `Degraded=True` (the most pressing cause; the message lists them all).
    pub const REASON_NODES_NOT_READY: &str = "NodesNotReady";
    pub const REASON_VMS_BLOCKED: &str = "VmsBlocked";
    pub const REASON_NODES_CLAIMED_TWICE: &str = "NodesClaimedByTwoPools";
    pub const REASON_BACKING_OFF: &str = "BackingOff";
    pub const REASON_BASELINE_UNUSABLE: &str = "BaselineUnusable";
}

/// Most items kept in each list of the status (recommendations, blocked VMs, pinned VMs...), so that a pool
/// of thousands of VMs keeps a small object; the `*Omitted` counters say how many were left out.
pub const STATUS_LIST_LIMIT: usize = 50;

/// What kubedrs observed and decided on its last pass over the pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPoolStatus {
    /// `Ready`, `Valid` (`InvalidSpec` names the field), `Degraded`, `Paused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The replica acting on the pool: the holder of the pool's Lease (`kubedrs run --leader-elect`), or
    /// the only process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub owner: Option<String>,
    /// Nodes in the pool (any state).
    #[serde(default)]
    pub nodes: u32,
    /// VMs in the pool (running or waiting for placement).
    #[serde(default)]
    pub vms: u32,
    /// Standard deviation of the nodes' normalized entitlement as the pool is now (before the moves of the last
    /// pass take effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imbalance: Option<f64>,
    /// The imbalance the migration threshold tolerates for this many nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_imbalance: Option<f64>,
    /// The resolved CPU baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_baseline: Option<CpuBaselineStatus>,
    /// VMs whose CPU model pins them to part of the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned_vms: Vec<PinnedVmStatus>,
    /// When the last pass started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass_time: Option<Time>,
    /// How long the last pass (observe and plan) took, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass_duration_seconds: Option<f64>,
    /// Migrations kubedrs started: in flight now and totals.
    #[serde(default)]
    pub migrations: MigrationsStatus,
    /// Moves and placements kubedrs recommends but does not execute (Manual mode, PartiallyAutomated
    /// balancing, VMs with `kubedrs.io/automation: Manual`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<Recommendation>,
    /// Recommendations left out of the list above.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recommendations_omitted: u32,
    /// Unmet demands: VMs the plan needed to move or place and could not, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<BlockedVm>,
    /// Blocked VMs left out of the list above.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub blocked_omitted: u32,
    /// Rules still broken after the plan, or Preferred rules the plan relaxed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_violations: Vec<RuleViolation>,
    /// Nodes matched by this pool and another: left out of both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicting_nodes: Vec<NodeConflict>,
    /// Why balancing stopped where it did, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_summary: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The resolved CPU baseline (`status.cpuBaseline`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuBaselineStatus {
    /// The model set on new VMIs; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Why there is none (mixed vendors, no common model, a model no node knows), in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A VM whose CPU model pins it to part of the pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinnedVmStatus {
    /// `namespace/name`.
    pub vm: String,
    /// Its CPU model (`host-passthrough:<host model>` for host-passthrough VMs).
    pub model: String,
    /// Nodes of the pool it can run on.
    pub eligible_nodes: u32,
}

/// Migrations kubedrs started (`status.migrations`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationsStatus {
    /// Migrations started by kubedrs that have not finished.
    #[serde(default)]
    pub in_flight: u32,
    /// The migrations in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<ActiveMigration>,
    /// Finished migrations since the operator started, by reason and result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub totals: Vec<MigrationTotal>,
}

/// A migration in flight.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveMigration {
    /// `namespace/name` of the VM.
    pub vm: String,
    /// Name of the VirtualMachineInstanceMigration.
    pub migration: String,
    /// Source node.
    pub from: String,
    /// Target node.
    pub to: String,
    /// `balance`, `maintenance`, `rule` or `placement` (the `kubedrs.io/reason` label).
    pub reason: String,
    /// KubeVirt's phase of the migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When kubedrs created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
}

/// Count of finished migrations for one reason and result.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationTotal {
    /// `balance`, `maintenance`, `rule` or `placement`.
    pub reason: String,
    /// `succeeded` or `failed`.
    pub result: String,
    /// How many.
    pub count: u64,
}

/// A move or placement kubedrs recommends without executing it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// `namespace/name` of the VM.
    pub vm: String,
    /// Current node; absent for the placement of a VM waiting to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Recommended node.
    pub to: String,
    /// `balance`, `maintenance`, `rule`, `reservation` or `placement`.
    pub reason: String,
    /// Why, in words.
    pub why: String,
}

/// A VM the plan needed to move or place and could not.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedVm {
    /// `namespace/name` of the VM.
    pub vm: String,
    /// Its node; absent for a VM waiting to be placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What the plan wanted: `maintenance`, `rule`, `reservation`, `balance` or `placement`.
    pub wanted: String,
    /// Short machine-readable reason: `NoCapacity`, `Rule`, `CpuModel`, `AutomationDisabled`,
    /// `NotLiveMigratable`, `SourceNotReady`, `InFlight`, `NoEligibleNode`.
    pub reason: String,
    /// Why, in words.
    pub message: String,
}

/// A rule still broken after the plan, or a Preferred rule it relaxed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleViolation {
    /// The rule's name.
    pub rule: String,
    /// The VMs involved (`namespace/name`).
    #[serde(default)]
    pub vms: Vec<String>,
    /// Why, in words.
    pub message: String,
}

/// A node matched by the node selectors of more than one pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeConflict {
    /// The node.
    pub node: String,
    /// Every pool whose nodeSelector matches it, sorted.
    pub pools: Vec<String>,
}
