//! The HostPool spec: the fields users write, their defaults and schema bounds (`///` docs become the
//! CRD's field descriptions).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

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
