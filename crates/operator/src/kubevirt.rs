//! Typed KubeVirt resources (`kubevirt.io/v1`): the parts of VirtualMachine, VirtualMachineInstance and
//! VirtualMachineInstanceMigration that kubedrs reads and writes.
//!
//! Only what kubedrs uses is typed; every struct that kubedrs could write back keeps the fields it does not
//! know in a flattened `other` map, so a read-modify-write never drops them. kubedrs writes with patches
//! anyway (VMI CPU model from the webhook, VMIM creation is a whole object of its own).
//!
//! The field names are checked against KubeVirt's published schemas (`data/kubevirt/schemas`) by
//! `crates/operator/tests/operator_kubevirt.rs`: examples generated from the schemas deserialize into these types, and
//! these types, filled in, validate against the schemas (which forbid unknown properties).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys;
use kubedrs_engine::Reason;

/// Fields kubedrs does not model, kept as they came.
pub type Other = BTreeMap<String, Value>;

/// A Kubernetes quantity as KubeVirt's schemas allow it: a string (`4Gi`, `500m`) or a bare integer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quantity(pub String);

impl Quantity {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Self {
        Quantity(s.to_string())
    }
}

impl Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            U(u64),
            F(f64),
        }
        Ok(Quantity(match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::I(i) => i.to_string(),
            Raw::U(u) => u.to_string(),
            Raw::F(f) => f.to_string(),
        }))
    }
}

// ---------------------------------------------------------------------------------------------------------
// VirtualMachine
// ---------------------------------------------------------------------------------------------------------

/// `VirtualMachine.spec`: whether it runs and the template of its VMI.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachine",
    plural = "virtualmachines",
    shortname = "vm",
    namespaced,
    status = "VirtualMachineStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSpec {
    /// Deprecated by KubeVirt in favour of `runStrategy`; mutually exclusive with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// `Always`, `RerunOnFailure`, `Manual`, `Halted`, `Once`, `WaitAsReceiver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    /// Instancetype reference (`{kind, name}`): CPU and memory come from it when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instancetype: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<VirtualMachineInstanceTemplateSpec>,
    #[serde(flatten)]
    pub other: Other,
}

/// `VirtualMachine.spec.template`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceTemplateSpec {
    /// Labels and annotations the VMI gets (rules and kubedrs annotations are read here for stopped VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<VirtualMachineInstanceSpec>,
}

/// The template's metadata: KubeVirt's schema keeps it free-form; kubedrs reads labels and annotations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: Other,
}

/// `VirtualMachine.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStatus {
    /// `Stopped`, `Starting`, `Running`, `Migrating`, `ErrorUnschedulable`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printable_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    #[serde(flatten)]
    pub other: Other,
}

impl VirtualMachine {
    /// Is the VM meant to run (`runStrategy` other than `Halted`, or `running: true`)?
    pub fn wants_to_run(&self) -> bool {
        match (&self.spec.run_strategy, self.spec.running) {
            (Some(s), _) => s != "Halted",
            (None, Some(r)) => r,
            (None, None) => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// VirtualMachineInstance
// ---------------------------------------------------------------------------------------------------------

/// `VirtualMachineInstance.spec` (also the VM template's spec).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachineInstance",
    plural = "virtualmachineinstances",
    shortname = "vmi",
    namespaced,
    status = "VirtualMachineInstanceStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceSpec {
    #[serde(default)]
    pub domain: DomainSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Pod affinity of the virt-launcher pod, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Value>,
    /// `kubedrs` asks kubedrs to place the virt-launcher pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// `LiveMigrate`, `LiveMigrateIfPossible`, `External`, `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_strategy: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `spec.domain`: CPU, memory and resources.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DomainSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(flatten)]
    pub other: Other,
}

/// `spec.domain.cpu`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// A named model, `host-model`, `host-passthrough`, or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_cpu_placement: Option<bool>,
    #[serde(flatten)]
    pub other: Other,
}

impl CpuSpec {
    /// vCPUs = sockets x cores x threads, each defaulting to 1 as KubeVirt does.
    pub fn vcpus(&self) -> u32 {
        let f = |v: Option<u32>| v.unwrap_or(1).max(1);
        f(self.sockets).saturating_mul(f(self.cores)).saturating_mul(f(self.threads))
    }
}

/// `spec.domain.memory`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemorySpec {
    /// Memory the guest sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_guest: Option<Quantity>,
    #[serde(flatten)]
    pub other: Other,
}

/// `spec.domain.resources`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<BTreeMap<String, Quantity>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BTreeMap<String, Quantity>>,
    /// When true, the memory request is not raised by KubeVirt's overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overcommit_guest_overhead: Option<bool>,
}

/// `VirtualMachineInstance.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// `Pending`, `Scheduling`, `Scheduled`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<VmiCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_state: Option<MigrationState>,
    /// Pod UID -> node name; two entries while a migration runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_pods: Option<BTreeMap<String, String>>,
    /// `BlockMigration` or `LiveMigration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_method: Option<String>,
    #[serde(rename = "currentCPUTopology", default, skip_serializing_if = "Option::is_none")]
    pub current_cpu_topology: Option<CpuTopology>,
    /// Set by KubeVirt when the node is drained (eviction in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evacuation_node_name: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// A VMI condition (`LiveMigratable`, `Ready`, `Paused`...).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VmiCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
}

/// `status.currentCPUTopology`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTopology {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
}

/// A live migration's progress, as KubeVirt reports it on the VMI and the VMIM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_requested: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp: Option<Time>,
    /// `PreCopy` or `PostCopy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// UID of the VMIM this state belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

// What kubedrs does not model is kept for a read-modify-write; a cached copy that is only read does without
// it (most of a VMI's size: devices, volumes, networks, interfaces, guest information).

impl VirtualMachineInstanceSpec {
    /// Drops the fields kubedrs does not model (the `other` maps).
    pub fn drop_unmodelled(&mut self) {
        self.other = Other::new();
        self.domain.other = Other::new();
        if let Some(cpu) = self.domain.cpu.as_mut() {
            cpu.other = Other::new();
        }
        if let Some(memory) = self.domain.memory.as_mut() {
            memory.other = Other::new();
        }
    }
}

/// Keeps only the annotations kubedrs reads (its own, `kubedrs.io/...`): KubeVirt and other tools annotate
/// VMs and VMIs with values that need not be cached.
fn keep_kubedrs_annotations(meta: &mut ObjectMeta) {
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(crate::crd::PREFIX));
    }
}

impl VirtualMachineInstance {
    /// Drops the fields kubedrs does not model (the `other` maps, annotations not kubedrs', finalizers,
    /// conditions but `LiveMigratable`).
    pub fn drop_unmodelled(&mut self) {
        self.spec.drop_unmodelled();
        keep_kubedrs_annotations(&mut self.metadata);
        self.metadata.finalizers = None;
        if let Some(status) = self.status.as_mut() {
            status.other = Other::new();
            status.conditions.retain(|c| c.type_ == LIVE_MIGRATABLE);
            if let Some(m) = status.migration_state.as_mut() {
                m.other = Other::new();
            }
        }
    }
}

impl VirtualMachine {
    /// Drops the fields kubedrs does not model (the `other` maps, annotations not kubedrs', finalizers).
    pub fn drop_unmodelled(&mut self) {
        keep_kubedrs_annotations(&mut self.metadata);
        self.metadata.finalizers = None;
        self.spec.other = Other::new();
        if let Some(t) = self.spec.template.as_mut() {
            if let Some(m) = t.metadata.as_mut() {
                m.other = Other::new();
            }
            if let Some(spec) = t.spec.as_mut() {
                spec.drop_unmodelled();
            }
        }
        if let Some(status) = self.status.as_mut() {
            status.other = Other::new();
        }
    }
}

/// `type` of the condition that says whether KubeVirt can live-migrate a VMI.
pub const LIVE_MIGRATABLE: &str = "LiveMigratable";

impl VirtualMachineInstance {
    /// `namespace/name`, the VM's name in a snapshot.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    pub fn condition(&self, type_: &str) -> Option<&VmiCondition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
    }

    /// KubeVirt's `LiveMigratable` condition: `Some(true)` when True, `Some(false)` when False (with the
    /// reason in the condition), `None` when KubeVirt has not said.
    pub fn live_migratable(&self) -> Option<bool> {
        self.condition(LIVE_MIGRATABLE).map(|c| c.status == "True")
    }

    pub fn node_name(&self) -> Option<&str> {
        self.status.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
    }

    /// A migration is running on the VMI (KubeVirt's view: started, not completed and not failed).
    pub fn is_migrating(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.migration_state.as_ref())
            .is_some_and(|m| m.start_timestamp.is_some() && m.completed != Some(true) && m.failed != Some(true))
    }
}

// ---------------------------------------------------------------------------------------------------------
// VirtualMachineInstanceMigration
// ---------------------------------------------------------------------------------------------------------

/// `VirtualMachineInstanceMigration.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachineInstanceMigration",
    plural = "virtualmachineinstancemigrations",
    shortname = "vmim",
    namespaced,
    status = "VirtualMachineInstanceMigrationStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationSpec {
    /// The VMI to migrate, in the migration's namespace.
    pub vmi_name: String,
    /// Restricts target nodes (KubeVirt >= 1.6); kubedrs sets `kubernetes.io/hostname: <target>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_node_selector: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: Other,
}

/// `VirtualMachineInstanceMigration.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceMigrationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MigrationPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_state: Option<MigrationState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase_transition_timestamps: Vec<PhaseTransition>,
    #[serde(flatten)]
    pub other: Other,
}

/// When a migration entered a phase.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTransition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MigrationPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_transition_timestamp: Option<Time>,
}

/// Phase of a VirtualMachineInstanceMigration, as KubeVirt's API defines it
/// (`VirtualMachineInstanceMigrationPhase`); unknown values from newer KubeVirt versions are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MigrationPhase {
    /// `""`: not yet seen by KubeVirt.
    Unset,
    Pending,
    Scheduling,
    Scheduled,
    PreparingTarget,
    TargetReady,
    /// Decentralized (cross-cluster) migrations, KubeVirt >= 1.6.
    WaitingForSync,
    /// Decentralized (cross-cluster) migrations, KubeVirt >= 1.6.
    Synchronizing,
    Running,
    Succeeded,
    Failed,
    Other(String),
}

impl MigrationPhase {
    pub fn as_str(&self) -> &str {
        match self {
            MigrationPhase::Unset => "",
            MigrationPhase::Pending => "Pending",
            MigrationPhase::Scheduling => "Scheduling",
            MigrationPhase::Scheduled => "Scheduled",
            MigrationPhase::PreparingTarget => "PreparingTarget",
            MigrationPhase::TargetReady => "TargetReady",
            MigrationPhase::WaitingForSync => "WaitingForSync",
            MigrationPhase::Synchronizing => "Synchronizing",
            MigrationPhase::Running => "Running",
            MigrationPhase::Succeeded => "Succeeded",
            MigrationPhase::Failed => "Failed",
            MigrationPhase::Other(s) => s,
        }
    }

    /// Succeeded or Failed: KubeVirt will not change it again.
    pub fn is_finished(&self) -> bool {
        matches!(self, MigrationPhase::Succeeded | MigrationPhase::Failed)
    }
}

impl From<&str> for MigrationPhase {
    fn from(s: &str) -> Self {
        match s {
            "" => MigrationPhase::Unset,
            "Pending" => MigrationPhase::Pending,
            "Scheduling" => MigrationPhase::Scheduling,
            "Scheduled" => MigrationPhase::Scheduled,
            "PreparingTarget" => MigrationPhase::PreparingTarget,
            "TargetReady" => MigrationPhase::TargetReady,
            "WaitingForSync" => MigrationPhase::WaitingForSync,
            "Synchronizing" => MigrationPhase::Synchronizing,
            "Running" => MigrationPhase::Running,
            "Succeeded" => MigrationPhase::Succeeded,
            "Failed" => MigrationPhase::Failed,
            other => MigrationPhase::Other(other.to_string()),
        }
    }
}

impl Serialize for MigrationPhase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MigrationPhase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MigrationPhase::from(String::deserialize(d)?.as_str()))
    }
}

impl std::fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl VirtualMachineInstanceMigration {
    /// The migration kubedrs creates to move `vmi` (in `namespace`) from `source` to `target`:
    /// `addedNodeSelector: {kubernetes.io/hostname: <target>}`, labels `kubedrs.io/pool` and
    /// `kubedrs.io/reason`, and the source and target nodes in annotations so that a restarted kubedrs
    /// adopts it before KubeVirt fills in `status.migrationState`. The name is generated by the API server.
    pub fn for_move(namespace: &str, vmi: &str, source: &str, target: &str, pool: &str, reason: Reason) -> Self {
        // generateName: at most 63 characters with the 5 the API server adds.
        let stem: String = format!("kubedrs-{vmi}").chars().take(57).collect();
        VirtualMachineInstanceMigration {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", stem.trim_end_matches('-'))),
                namespace: Some(namespace.to_string()),
                labels: Some(
                    [
                        (keys::POOL.to_string(), pool.to_string()),
                        (keys::REASON.to_string(), reason.as_str().to_string()),
                    ]
                    .into(),
                ),
                annotations: Some(
                    [
                        (keys::SOURCE_NODE.to_string(), source.to_string()),
                        (keys::TARGET_NODE.to_string(), target.to_string()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: VirtualMachineInstanceMigrationSpec {
                vmi_name: vmi.to_string(),
                added_node_selector: Some([(keys::HOSTNAME.to_string(), target.to_string())].into()),
                other: Other::new(),
            },
            status: None,
        }
    }

    pub fn phase(&self) -> MigrationPhase {
        self.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or(MigrationPhase::Unset)
    }

    /// Finished in KubeVirt's view (Succeeded or Failed).
    pub fn is_finished(&self) -> bool {
        self.phase().is_finished()
    }

    /// `namespace/vmiName`, the VM's name in a snapshot.
    pub fn vm_key(&self) -> String {
        format!("{}/{}", self.metadata.namespace.as_deref().unwrap_or_default(), self.spec.vmi_name)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.as_ref()?.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn state(&self) -> Option<&MigrationState> {
        self.status.as_ref()?.migration_state.as_ref()
    }

    /// Source node: KubeVirt's migration state, else kubedrs' annotation.
    pub fn source_node(&self) -> Option<&str> {
        self.state()
            .and_then(|s| s.source_node.as_deref())
            .filter(|s| !s.is_empty())
            .or(self.annotation(keys::SOURCE_NODE))
    }

    /// Target node: KubeVirt's migration state, else kubedrs' annotation, else the added node selector.
    pub fn target_node(&self) -> Option<&str> {
        self.state()
            .and_then(|s| s.target_node.as_deref())
            .filter(|s| !s.is_empty())
            .or(self.annotation(keys::TARGET_NODE))
            .or_else(|| self.spec.added_node_selector.as_ref()?.get(keys::HOSTNAME).map(String::as_str))
    }

    /// The pool label, for migrations kubedrs created.
    pub fn pool(&self) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(keys::POOL).map(String::as_str)
    }

    /// The reason label, for migrations kubedrs created.
    pub fn reason(&self) -> Option<Reason> {
        match self.metadata.labels.as_ref()?.get(keys::REASON)?.as_str() {
            "maintenance" => Some(Reason::Maintenance),
            "rule" => Some(Reason::Rule),
            "reservation" => Some(Reason::Reservation),
            "balance" => Some(Reason::Balance),
            "placement" => Some(Reason::Placement),
            _ => None,
        }
    }

    /// When it finished: KubeVirt's end timestamp, else the time of its last phase transition.
    pub fn finished_at(&self) -> Option<&Time> {
        let st = self.status.as_ref()?;
        st.migration_state.as_ref().and_then(|m| m.end_timestamp.as_ref()).or_else(|| {
            st.phase_transition_timestamps
                .iter()
                .filter(|t| t.phase.as_ref().is_some_and(MigrationPhase::is_finished))
                .filter_map(|t| t.phase_transition_timestamp.as_ref())
                .max()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_trimmed_vmi_keeps_kubedrs_annotations_and_the_live_migratable_condition() {
        let mut v: VirtualMachineInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "a", "namespace": "ns", "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"],
                         "annotations": {"kubevirt.io/latest-observed-api-version": "v1", "kubedrs.io/shares": "high"}},
            "spec": {"domain": {"devices": {"disks": [{"name": "root"}]}}},
            "status": {"phase": "Running", "nodeName": "n1", "interfaces": [{"ipAddress": "10.0.0.1"}],
                       "conditions": [{"type": "Ready", "status": "True"}, {"type": "LiveMigratable", "status": "True"}]},
        }))
        .unwrap();
        v.drop_unmodelled();
        assert_eq!(v.metadata.annotations, Some([("kubedrs.io/shares".to_string(), "high".to_string())].into()));
        assert_eq!(v.metadata.finalizers, None);
        assert_eq!(v.live_migratable(), Some(true));
        assert_eq!(v.status.as_ref().unwrap().conditions.len(), 1);
        assert_eq!((v.node_name(), v.spec.domain.other.len()), (Some("n1"), 0));
    }

    #[test]
    fn quantities_take_strings_and_integers() {
        let r: ResourceRequirements =
            serde_json::from_value(serde_json::json!({"requests": {"cpu": 2, "memory": "4Gi"}})).unwrap();
        let req = r.requests.unwrap();
        assert_eq!(req["cpu"].as_str(), "2");
        assert_eq!(req["memory"].as_str(), "4Gi");
    }

    #[test]
    fn unknown_phases_are_kept() {
        let p: MigrationPhase = serde_json::from_value(serde_json::json!("Teleporting")).unwrap();
        assert_eq!(p, MigrationPhase::Other("Teleporting".into()));
        assert_eq!(serde_json::to_value(&p).unwrap(), "Teleporting");
        assert!(MigrationPhase::from("Failed").is_finished());
        assert!(!MigrationPhase::from("Running").is_finished());
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let raw = serde_json::json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"domain": {"cpu": {"cores": 2, "features": [{"name": "x"}]}, "devices": {"disks": []}},
                     "volumes": [{"name": "root"}]},
            "status": {"nodeName": "n1", "interfaces": [{"ipAddress": "10.0.0.1"}]}
        });
        let vmi: VirtualMachineInstance = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(serde_json::to_value(&vmi).unwrap(), raw);
    }

    #[test]
    fn a_move_is_a_vmim_with_selector_labels_and_annotations() {
        let m = VirtualMachineInstanceMigration::for_move("ns", "web-1", "n1", "n2", "prod", Reason::Balance);
        assert_eq!(m.metadata.generate_name.as_deref(), Some("kubedrs-web-1-"));
        assert_eq!(m.pool(), Some("prod"));
        assert_eq!(m.reason(), Some(Reason::Balance));
        assert_eq!(m.source_node(), Some("n1"));
        assert_eq!(m.target_node(), Some("n2"));
        assert_eq!(m.vm_key(), "ns/web-1");
        assert_eq!(m.phase(), MigrationPhase::Unset);
        let long = "x".repeat(80);
        let m = VirtualMachineInstanceMigration::for_move("ns", &long, "n1", "n2", "p", Reason::Rule);
        assert!(m.metadata.generate_name.unwrap().len() <= 58);
    }

    #[test]
    fn vcpus_multiply_the_topology() {
        let c = CpuSpec { cores: Some(4), sockets: Some(2), ..Default::default() };
        assert_eq!(c.vcpus(), 8);
        assert_eq!(CpuSpec::default().vcpus(), 1);
    }
}
