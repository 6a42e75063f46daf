//! The snapshot the engine plans on: a pool's nodes, VMs, rules and settings at one instant.
//!
//! Plain data with no Kubernetes types, so the operator and the simulator can both build it and tests can
//! write it by hand. Quantities are integers (CPU in millicores, memory in bytes) so that a snapshot has no
//! negative or NaN capacity by construction; [`Snapshot::validate`] checks the rest and names the field.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub type Labels = BTreeMap<String, String>;

/// CPU (millicores) and memory (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Resources {
    pub const ZERO: Resources = Resources { cpu_millis: 0, memory_bytes: 0 };

    pub fn new(cpu_millis: u64, memory_bytes: u64) -> Self {
        Resources { cpu_millis, memory_bytes }
    }

    /// Value of one resource, as f64, for the arithmetic of entitlement and load.
    pub fn get(&self, r: Resource) -> f64 {
        match r {
            Resource::Cpu => self.cpu_millis as f64,
            Resource::Memory => self.memory_bytes as f64,
        }
    }

    pub fn saturating_add(self, o: Resources) -> Resources {
        Resources::new(self.cpu_millis.saturating_add(o.cpu_millis), self.memory_bytes.saturating_add(o.memory_bytes))
    }

    pub fn saturating_sub(self, o: Resources) -> Resources {
        Resources::new(self.cpu_millis.saturating_sub(o.cpu_millis), self.memory_bytes.saturating_sub(o.memory_bytes))
    }

    /// True when both resources of `self` fit in `room`.
    pub fn fits_in(&self, room: Resources) -> bool {
        self.cpu_millis <= room.cpu_millis && self.memory_bytes <= room.memory_bytes
    }
}

/// The two resources the engine divides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub const ALL: [Resource; 2] = [Resource::Cpu, Resource::Memory];

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Where a node stands. Only `Ready` nodes take VMs; maintenance states are evacuated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeState {
    #[default]
    Ready,
    /// The kubelet is not ready: its VMs cannot be live-migrated (no source) and nothing goes there.
    NotReady,
    /// Unschedulable: keeps its VMs, takes no new ones.
    Cordoned,
    /// Maintenance was asked for and VMs are still leaving.
    EnteringMaintenance,
    /// Maintenance was asked for and the node is empty.
    InMaintenance,
}

impl NodeState {
    /// Can the node receive VMs (placement, balancing, evacuation targets)?
    pub fn accepts_vms(self) -> bool {
        self == NodeState::Ready
    }

    /// Must the node be emptied?
    pub fn in_maintenance(self) -> bool {
        matches!(self, NodeState::EnteringMaintenance | NodeState::InMaintenance)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// Allocatable capacity for VMs.
    pub capacity: Resources,
    pub state: NodeState,
    pub labels: Labels,
    /// CPU vendor as KubeVirt's node-labeller reports it (`Intel`, `AMD`).
    #[serde(default)]
    pub cpu_vendor: Option<String>,
    /// Every named CPU model the node can run (`cpu-model.node.kubevirt.io/<Model>`).
    #[serde(default)]
    pub cpu_models: BTreeSet<String>,
    /// The node's own host CPU model (`host-model-cpu.node.kubevirt.io/<Model>`).
    #[serde(default)]
    pub host_model: Option<String>,
}

/// CPU shares level, per vCPU for CPU and per MiB for memory, as vSphere defines them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Shares {
    Low,
    #[default]
    Normal,
    High,
    /// Explicit shares per vCPU (CPU) or per MiB (memory).
    Custom(u32),
}

impl Shares {
    /// Shares per vCPU.
    pub fn cpu_per_vcpu(self) -> f64 {
        match self {
            Shares::Low => 500.0,
            Shares::Normal => 1000.0,
            Shares::High => 2000.0,
            Shares::Custom(n) => n as f64,
        }
    }

    /// Shares per MiB of configured memory.
    pub fn memory_per_mib(self) -> f64 {
        match self {
            Shares::Low => 5.0,
            Shares::Normal => 10.0,
            Shares::High => 20.0,
            Shares::Custom(n) => n as f64,
        }
    }
}

impl std::str::FromStr for Shares {
    type Err = String;
    /// Parses `low`, `normal`, `high` or a positive integer, as the share annotations allow.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "low" => Ok(Shares::Low),
            "normal" => Ok(Shares::Normal),
            "high" => Ok(Shares::High),
            other => match other.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Shares::Custom(n)),
                _ => Err(format!("{other:?} is not a shares value: use low, normal, high or a positive integer")),
            },
        }
    }
}

impl std::fmt::Display for Shares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shares::Low => f.write_str("low"),
            Shares::Normal => f.write_str("normal"),
            Shares::High => f.write_str("high"),
            Shares::Custom(n) => write!(f, "{n}"),
        }
    }
}

/// What a VM's CPU model asks of the node it runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CpuRequirement {
    /// No model constraint (KubeVirt's default model, or the pool baseline set by kubedrs).
    #[default]
    Any,
    /// A named model: only nodes that list it (`cpu-model.node.kubevirt.io/<Model>`).
    Model(String),
    /// `host-model` started on a node with this host model: only nodes with the same host model.
    HostModel(String),
    /// `host-passthrough` started on a node with this host model: only nodes with the same host model.
    HostPassthrough(String),
}

impl CpuRequirement {
    pub fn allows(&self, node: &Node) -> bool {
        match self {
            CpuRequirement::Any => true,
            CpuRequirement::Model(m) => node.cpu_models.contains(m),
            CpuRequirement::HostModel(m) | CpuRequirement::HostPassthrough(m) => node.host_model.as_deref() == Some(m),
        }
    }
}

/// Per-VM override of the pool's automation level (`kubedrs.io/automation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VmAutomation {
    /// Follow the pool.
    #[default]
    Default,
    /// Recommend moves, never execute them.
    Manual,
    /// Never moved by kubedrs, not even for maintenance.
    Disabled,
}

/// Reservation, limit and shares of one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// Guaranteed floor (Kubernetes request). Millicores or bytes.
    pub reservation: u64,
    /// Cap (Kubernetes limit); `None` is unlimited.
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub shares: Shares,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    /// Unique in the snapshot (`namespace/name` in Kubernetes).
    pub name: String,
    /// Where it runs; `None` for a VM waiting for initial placement.
    pub node: Option<String>,
    #[serde(default)]
    pub namespace: String,
    pub vcpus: u32,
    /// Configured guest memory (bytes): memory shares scale with it, and it is what a migration copies.
    pub memory_size_bytes: u64,
    pub cpu: Allocation,
    pub memory: Allocation,
    /// Recent demand (smoothed): CPU millicores it would use uncontended, memory working set.
    pub demand: Resources,
    /// Rate at which the guest dirties memory, bytes per second: makes migrations longer.
    #[serde(default)]
    pub dirty_rate_bytes_per_sec: u64,
    #[serde(default)]
    pub cpu_requirement: CpuRequirement,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub automation: VmAutomation,
    /// KubeVirt's `LiveMigratable` condition; false means kubedrs cannot move it.
    #[serde(default = "yes")]
    pub live_migratable: bool,
}

fn yes() -> bool {
    true
}

impl Vm {
    /// The reservation as a pair.
    pub fn reservation(&self) -> Resources {
        Resources::new(self.cpu.reservation, self.memory.reservation)
    }

    pub fn allocation(&self, r: Resource) -> &Allocation {
        match r {
            Resource::Cpu => &self.cpu,
            Resource::Memory => &self.memory,
        }
    }

    /// Shares of the VM for one resource: per vCPU for CPU, per MiB of guest memory for memory.
    pub fn shares(&self, r: Resource) -> f64 {
        match r {
            Resource::Cpu => self.cpu.shares.cpu_per_vcpu() * self.vcpus.max(1) as f64,
            Resource::Memory => {
                let mib = (self.memory_size_bytes as f64 / (1024.0 * 1024.0)).max(1.0);
                self.memory.shares.memory_per_mib() * mib
            }
        }
    }
}

/// A label selector (the engine's own, with Kubernetes' semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default)]
    pub match_labels: Labels,
    #[serde(default)]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    pub fn labels(pairs: &[(&str, &str)]) -> Self {
        Selector {
            match_labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            match_expressions: vec![],
        }
    }

    /// Kubernetes semantics: every label and every expression must hold; an empty selector matches all.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    SelectorOperator::In => value.is_some_and(|v| e.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// Must (never broken by a plan) or should (a penalty, relaxed when it makes a plan infeasible).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Enforcement {
    #[default]
    Required,
    Preferred,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RuleKind {
    /// The selected VMs run on one node.
    VMAffinity { vm_selector: Selector },
    /// The selected VMs run on different nodes.
    VMAntiAffinity { vm_selector: Selector },
    /// The selected VMs run on nodes the node selector matches.
    VMNodeAffinity { vm_selector: Selector, node_selector: Selector },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    #[serde(flatten)]
    pub kind: RuleKind,
    #[serde(default)]
    pub enforcement: Enforcement,
}

impl Rule {
    pub fn vm_selector(&self) -> &Selector {
        match &self.kind {
            RuleKind::VMAffinity { vm_selector }
            | RuleKind::VMAntiAffinity { vm_selector }
            | RuleKind::VMNodeAffinity { vm_selector, .. } => vm_selector,
        }
    }
}

/// Pool automation level (`spec.automation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Automation {
    /// Recommendations only.
    Manual,
    /// Placement and maintenance executed, balancing recommended.
    PartiallyAutomated,
    #[default]
    FullyAutomated,
}

/// Limits on migrations kubedrs starts at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrency {
    pub per_pool: u32,
    pub per_node_outbound: u32,
    /// `None`: no inbound limit (KubeVirt has none).
    pub per_node_inbound: Option<u32>,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency { per_pool: 5, per_node_outbound: 2, per_node_inbound: Some(2) }
    }
}

/// How the pool's CPU baseline is chosen (`spec.cpuBaseline`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CpuBaselinePolicy {
    /// The newest model every node supports.
    #[default]
    Auto,
    /// Report only.
    Off,
    /// A fixed model name.
    Model(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSettings {
    pub name: String,
    pub automation: Automation,
    /// 1 (only mandatory moves) .. 5 (most aggressive balancing).
    pub migration_threshold: u8,
    /// Cap on balancing moves in one pass (mandatory moves are not capped).
    pub max_migrations_per_pass: u32,
    pub concurrency: Concurrency,
    pub cpu_baseline: CpuBaselinePolicy,
    /// A VM is moved by balancing at most this many times in 24 hours.
    pub max_moves_per_vm_per_day: u32,
    /// After a move, a VM is not moved again by balancing for this long unless the gain is large.
    pub cooldown_secs: u64,
    /// Network bandwidth a migration gets, bytes per second (migration time and cost).
    pub migration_bandwidth_bytes_per_sec: u64,
    /// How long a VM whose migration failed waits before kubedrs tries it again.
    #[serde(default)]
    pub failure_backoff: Backoff,
}

/// Exponential backoff after failed migrations: `base_secs` after the first failure since the VM's last
/// successful migration, doubling per further failure, at most `max_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub base_secs: u64,
    pub max_secs: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base_secs: 300, max_secs: 4 * 3600 }
    }
}

impl Backoff {
    /// The wait after `failures` failures in a row (0: none).
    pub fn wait_secs(&self, failures: u32) -> u64 {
        if failures == 0 {
            return 0;
        }
        let doubled = self.base_secs.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
        doubled.min(self.max_secs)
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            name: "default".into(),
            automation: Automation::FullyAutomated,
            migration_threshold: 3,
            max_migrations_per_pass: 16,
            concurrency: Concurrency::default(),
            cpu_baseline: CpuBaselinePolicy::Auto,
            max_moves_per_vm_per_day: 6,
            cooldown_secs: 3600,
            // 1 GiB/s: a 10 GbE link, shared.
            migration_bandwidth_bytes_per_sec: 1 << 30,
            failure_backoff: Backoff::default(),
        }
    }
}

/// A migration already running, whoever started it: it holds concurrency slots, its VM is not moved again,
/// and the VM is counted on the target (on the source while the target is not known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub vm: String,
    pub source: String,
    /// Empty when not known yet (a migration kubedrs did not create, not scheduled yet).
    pub target: String,
}

/// A migration that ended recently: ping-pong, per-day limits and backoff after failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastMove {
    pub vm: String,
    pub from: String,
    pub to: String,
    /// When it ended, in seconds on the same clock as [`Snapshot::now`].
    pub at: u64,
    /// False for a migration that failed or was aborted: the VM stayed on `from`.
    #[serde(default = "yes")]
    pub succeeded: bool,
}

/// Everything the engine needs for one pass over one pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub pool: PoolSettings,
    pub nodes: Vec<Node>,
    pub vms: Vec<Vm>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub in_flight: Vec<InFlight>,
    #[serde(default)]
    pub history: Vec<PastMove>,
    /// Current time in seconds (any epoch; the history uses the same).
    #[serde(default)]
    pub now: u64,
}
