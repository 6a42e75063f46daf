//! The `HostPool` custom resource (`kubedrs.io/v1alpha1`): spec, status and the checks the API server
//! cannot make.
//!
//! The names follow `docs/api.md` (the API contract). The Rust types are the source of the CRD: `///` docs
//! become field descriptions, `#[serde(default = ..)]` becomes schema defaults, `#[schemars(..)]` bounds and
//! `x-kubernetes-validations` (CEL) rules become server-side validation. `kubedrs crd` prints the YAML that
//! is committed in `crds/` and in the chart; a test fails when they drift.
//!
//! [`HostPoolSpec::validate`] is the second line: what a schema cannot say (a selector operator that does
//! not exist, an interval that does not parse when the API server skipped CEL) becomes a list of
//! [`FieldError`]s that name the field, for the `Valid` condition.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kubedrs_engine::{
    Automation as EngineAutomation, Enforcement as EngineEnforcement, PoolSettings, Rule as EngineRule, RuleKind,
    Selector, SelectorOperator, SelectorRequirement,
};
use kubedrs_spec::pool::PoolFields;

/// API group of every kubedrs resource.
pub const GROUP: &str = "kubedrs.io";
/// Label and annotation prefix (`kubedrs.io/...`).
pub const PREFIX: &str = "kubedrs.io/";

/// A set of nodes that kubedrs balances as one, with its rules and automation level.
// kube's `printcolumn(..)` repeats `type_ = ..` per column, which clippy takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubedrs.io",
    version = "v1alpha1",
    kind = "HostPool",
    plural = "hostpools",
    singular = "hostpool",
    shortname = "hp",
    category = "kubedrs",
    status = "HostPoolStatus",
    derive = "PartialEq",
    doc = "A pool of nodes balanced by kubedrs, the Distributed Resource Scheduler for KubeVirt: which nodes, \
           how far kubedrs may act on its own, how hard it balances, and the placement rules of its VMs.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The last pass planned the pool (see the Ready condition's message)"
    ),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodes", description = "Nodes in the pool"),
    printcolumn(name = "VMs", type_ = "integer", json_path = ".status.vms", description = "VMs in the pool"),
    printcolumn(
        name = "Imbalance",
        type_ = "number",
        json_path = ".status.imbalance",
        description = "Standard deviation of the nodes' normalized entitlement"
    ),
    printcolumn(
        name = "Target",
        type_ = "number",
        json_path = ".status.targetImbalance",
        description = "Imbalance the migration threshold tolerates"
    ),
    printcolumn(
        name = "In-Flight",
        type_ = "integer",
        json_path = ".status.migrations.inFlight",
        description = "Migrations kubedrs started that have not finished"
    ),
    printcolumn(
        name = "Automation",
        type_ = "string",
        json_path = ".spec.automation",
        description = "Automation level"
    ),
    printcolumn(
        name = "Baseline",
        type_ = "string",
        json_path = ".status.cpuBaseline.model",
        description = "Resolved CPU baseline",
        priority = 1
    ),
    printcolumn(
        name = "Paused",
        type_ = "boolean",
        json_path = ".spec.paused",
        description = "kubedrs takes no action on the pool",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct HostPoolSpec {
    /// Which nodes belong to the pool (a standard label selector). A node matched by two pools is reported on
    /// both pools' status and left alone by both. An empty selector matches every node.
    pub node_selector: LabelSelector,

    /// How far kubedrs acts on its own. `Manual`: recommendations only (status and Events).
    /// `PartiallyAutomated`: initial placement and maintenance evacuation are executed, balancing is only
    /// recommended. `FullyAutomated`: everything is executed.
    #[serde(default)]
    pub automation: AutomationLevel,

    /// How hard kubedrs balances: 1 applies only mandatory moves (maintenance, rules, reservations),
    /// 5 is the most aggressive balancing. The target imbalance is 0.1 * (5 - threshold) / sqrt(min(nodes, 16));
    /// a move must close a gap between two nodes wider than 15/10/5/2.5 points (thresholds 2/3/4/5) plus
    /// the VM's own load; a node whose VMs are entitled to more CPU or memory than it has is relieved first,
    /// down to 90%.
    #[serde(default = "default_migration_threshold")]
    #[schemars(range(min = 1, max = 5))]
    pub migration_threshold: u8,

    /// Balancing period, a duration such as `30s`, `5m` or `1h`; at least `10s`, at most `24h`.
    #[serde(default = "default_interval")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"),
        length(max = 32),
        extend("x-kubernetes-validations" = [
            {"rule": "duration(self) >= duration('10s')", "message": "interval must be at least 10s"},
            {"rule": "duration(self) <= duration('24h')", "message": "interval must be at most 24h"}
        ])
    )]
    pub interval: String,

    /// Limits on the live migrations kubedrs has in flight at once (KubeVirt's own limits still apply:
    /// by default 5 per cluster and 2 outbound per node).
    #[serde(default)]
    pub concurrency: ConcurrencySpec,

    /// The pool's CPU baseline, the EVC of kubedrs: `Auto` resolves to the newest CPU model that every node
    /// of the pool supports; a KubeVirt CPU model name (e.g. `Haswell-noTSX`) fixes it; `Off` only reports.
    /// VMIs created without a CPU model (or with `host-model`) get the baseline from kubedrs' admission
    /// webhook when it is enabled.
    #[serde(default = "default_cpu_baseline")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
        extend("x-kubernetes-validations" = [
            {
                "rule": "!(self in ['host-model', 'host-passthrough'])",
                "message": "cpuBaseline must be Auto, Off or a named CPU model; host-model and host-passthrough depend on the node"
            }
        ])
    )]
    pub cpu_baseline: String,

    /// How maintenance is requested on the pool's nodes.
    #[serde(default)]
    pub maintenance: MaintenanceSpec,

    /// Placement rules of the pool's VMs, each with a unique name.
    #[serde(default)]
    #[schemars(length(max = 128), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub rules: Vec<RuleSpec>,

    /// Cap on balancing migrations planned in one pass. Mandatory moves (maintenance, hard rules,
    /// reservations) are not capped. 0 disables balancing moves.
    #[serde(default = "default_max_migrations_per_pass")]
    #[schemars(range(max = 1000))]
    pub max_migrations_per_pass: u32,

    /// A VM is moved by balancing at most this many times in 24 hours (KubeVirt alerts above 12).
    #[serde(default = "default_max_moves_per_vm_per_day")]
    #[schemars(range(min = 1, max = 12))]
    pub max_moves_per_vm_per_day: u32,

    /// When true, kubedrs keeps observing and reporting the pool but starts no migration and places no VM.
    /// Migrations already running are left to finish.
    #[serde(default)]
    pub paused: bool,
}

/// The defaults of the CRD, with an empty node selector (which matches every node).
impl Default for HostPoolSpec {
    fn default() -> Self {
        HostPoolSpec {
            node_selector: LabelSelector::default(),
            automation: AutomationLevel::default(),
            migration_threshold: default_migration_threshold(),
            interval: default_interval(),
            concurrency: ConcurrencySpec::default(),
            cpu_baseline: default_cpu_baseline(),
            maintenance: MaintenanceSpec::default(),
            rules: Vec::new(),
            max_migrations_per_pass: default_max_migrations_per_pass(),
            max_moves_per_vm_per_day: default_max_moves_per_vm_per_day(),
            paused: false,
        }
    }
}

fn default_migration_threshold() -> u8 {
    3
}
fn default_interval() -> String {
    "5m".into()
}
fn default_cpu_baseline() -> String {
    CPU_BASELINE_AUTO.into()
}
fn default_max_migrations_per_pass() -> u32 {
    16
}
fn default_max_moves_per_vm_per_day() -> u32 {
    6
}

/// `spec.cpuBaseline` value that resolves the baseline from the nodes.
pub const CPU_BASELINE_AUTO: &str = kubedrs_spec::pool::CPU_BASELINE_AUTO;
/// `spec.cpuBaseline` value that only reports.
pub const CPU_BASELINE_OFF: &str = kubedrs_spec::pool::CPU_BASELINE_OFF;

/// Pool automation level (`spec.automation`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum AutomationLevel {
    /// Recommendations only (status and Events).
    Manual,
    /// Initial placement and maintenance are executed; balancing is recommended.
    PartiallyAutomated,
    /// Everything is executed.
    #[default]
    FullyAutomated,
}

/// Limits on migrations kubedrs starts (`spec.concurrency`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencySpec {
    /// Migrations in flight in the whole pool.
    #[serde(default = "default_per_pool")]
    #[schemars(range(min = 1, max = 100))]
    pub per_pool: u32,
    /// Migrations in flight leaving one node.
    #[serde(default = "default_per_node")]
    #[schemars(range(min = 1, max = 20))]
    pub per_node_outbound: u32,
    /// Migrations in flight arriving on one node; 0 means no inbound limit (KubeVirt has none).
    #[serde(default = "default_per_node")]
    #[schemars(range(max = 20))]
    pub per_node_inbound: u32,
}

fn default_per_pool() -> u32 {
    5
}
fn default_per_node() -> u32 {
    2
}

impl Default for ConcurrencySpec {
    fn default() -> Self {
        ConcurrencySpec { per_pool: default_per_pool(), per_node_outbound: default_per_node(), per_node_inbound: 2 }
    }
}

/// How maintenance is requested (`spec.maintenance`). The annotation `kubedrs.io/maintenance: "true"` on a
/// node always requests it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    /// When true, a cordoned node (`kubectl cordon`) is also put in maintenance and evacuated; when false a
    /// cordoned node keeps its VMs and takes no new ones.
    #[serde(default)]
    pub honor_cordon: bool,
}

/// Kind of placement rule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RuleType {
    /// The selected VMs run on one node.
    VMAffinity,
    /// The selected VMs run on different nodes.
    VMAntiAffinity,
    /// The selected VMs run on nodes that `nodeSelector` matches.
    VMNodeAffinity,
}

/// How strictly a rule holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Enforcement {
    /// Must: never broken by a plan.
    #[default]
    Required,
    /// Should: relaxed (and reported) when it would make the plan infeasible.
    Preferred,
}

/// A placement rule (`spec.rules[]`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type == 'VMNodeAffinity' ? has(self.nodeSelector) : !has(self.nodeSelector)",
        "message": "nodeSelector is required for VMNodeAffinity rules and not allowed for VMAffinity and VMAntiAffinity rules"
    }
]))]
pub struct RuleSpec {
    /// Name of the rule, unique in the pool (a DNS label), used in Events and status.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// `VMAffinity` (together), `VMAntiAffinity` (apart) or `VMNodeAffinity` (on the nodes `nodeSelector`
    /// matches).
    #[serde(rename = "type")]
    pub type_: RuleType,
    /// The VMs the rule applies to, by the labels of the VirtualMachine (or VirtualMachineInstance).
    pub vm_selector: LabelSelector,
    /// The nodes allowed by a `VMNodeAffinity` rule; only for that type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// `Required` (must) or `Preferred` (should).
    #[serde(default)]
    pub enforcement: Enforcement,
}

// ---------------------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------------------

/// Condition types of a HostPool.
pub mod condition {
    /// The pool is observed and planned without error.
    pub const READY: &str = "Ready";
    /// The spec is valid; `False` with reason `InvalidSpec` and a message naming the field otherwise.
    pub const VALID: &str = "Valid";
    /// kubedrs runs but cannot do all it should (blocked evacuations, nodes claimed by two pools, failed
    /// migrations, unknown baseline model).
    pub const DEGRADED: &str = "Degraded";
    /// `spec.paused` is true.
    pub const PAUSED: &str = "Paused";
    /// Reason of `Valid=False`.
    pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
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
    /// `succeeded`, `failed` or `refused` (the API server refused to create the migration).
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

// ---------------------------------------------------------------------------------------------------------
// Generated YAML
// ---------------------------------------------------------------------------------------------------------

/// Every CustomResourceDefinition kubedrs installs (today only HostPool).
pub fn all_crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![bound_integers(HostPool::crd())]
}

/// Gives every integer field of the schema the bounds of its Rust type (`format: uint32` ->
/// 0..4294967295), so that the API server refuses a value the operator could not read back: one such
/// object (say `status.nodes: 4294967296`) would otherwise make every list of HostPools fail to decode.
fn bound_integers(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                let bounds: Option<(f64, f64)> = match map.get("format").and_then(|f| f.as_str()) {
                    Some("uint8") => Some((0.0, f64::from(u8::MAX))),
                    Some("uint16") => Some((0.0, f64::from(u16::MAX))),
                    Some("uint32") => Some((0.0, f64::from(u32::MAX))),
                    Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
                    // 2^53: the largest integer a JSON number carries exactly (the API server's own limit).
                    Some("uint64") => Some((0.0, 9_007_199_254_740_991.0)),
                    Some("int64") => Some((-9_007_199_254_740_991.0, 9_007_199_254_740_991.0)),
                    _ => None,
                };
                if let Some((lo, hi)) = bounds.filter(|_| map.get("type").and_then(|t| t.as_str()) == Some("integer")) {
                    let tighter = |key: &str, bound: f64, keep: fn(f64, f64) -> f64, map: &serde_json::Map<_, _>| {
                        map.get(key).and_then(serde_json::Value::as_f64).map_or(bound, |b| keep(b, bound))
                    };
                    let lo = tighter("minimum", lo, f64::max, map);
                    let hi = tighter("maximum", hi, f64::min, map);
                    map.insert("minimum".into(), serde_json::json!(lo));
                    map.insert("maximum".into(), serde_json::json!(hi));
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut json) = serde_json::to_value(&crd) else { return crd };
    walk(&mut json);
    serde_json::from_value(json).unwrap_or(crd)
}

/// The YAML that `kubedrs crd` prints and `crds/hostpool.yaml` holds: one document per CRD.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// Validation beyond the schema
// ---------------------------------------------------------------------------------------------------------

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
