//! Builders of Kubernetes objects for tests and docs, that read like sentences:
//!
//! ```
//! use kubedrs_operator::fixtures::*;
//! let n = node("n1").cpu("16").memory("64Gi").cordoned().build();
//! let v = vmi("shop/web-1").on("n1").cpus(2).memory("4Gi").label("app", "web").build();
//! let p = pool("prod").selects("kubedrs.io/pool", "prod").build();
//! # let _ = (n, v, p);
//! ```
//!
//! Names with a `/` are `namespace/name`. Quantities are Kubernetes strings. Builders never fail: a
//! malformed input ends up in the object, which is what tests of bad input want.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Namespace, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus,
    ResourceRequirements as PodResources,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::crd::{HostPool, HostPoolSpec};
use super::keys;
use super::kubevirt::*;
use super::metrics_api::{ContainerMetrics, PodMetrics};
use kubedrs_engine::Reason;

fn split(name: &str) -> (Option<String>, String) {
    match name.split_once('/') {
        Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
        None => (None, name.to_string()),
    }
}

fn meta(name: &str) -> ObjectMeta {
    let (namespace, name) = split(name);
    ObjectMeta { name: Some(name), namespace, ..ObjectMeta::default() }
}

fn set(map: &mut Option<BTreeMap<String, String>>, k: &str, v: &str) {
    map.get_or_insert_with(BTreeMap::new).insert(k.to_string(), v.to_string());
}

/// A time `secs` seconds after the Unix epoch.
pub fn at(secs: u64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX)).unwrap_or_default())
}

// --- Node ------------------------------------------------------------------------------------------------

pub struct NodeBuilder(Node);

/// A Ready node with no capacity yet.
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(Node {
        metadata: ObjectMeta { labels: Some([(keys::HOSTNAME.to_string(), name.to_string())].into()), ..meta(name) },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(BTreeMap::new()),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

impl NodeBuilder {
    fn alloc(mut self, k: &str, v: &str) -> Self {
        if let Some(a) = self.0.status.as_mut().and_then(|s| s.allocatable.as_mut()) {
            a.insert(k.to_string(), KQuantity(v.to_string()));
        }
        self
    }
    pub fn cpu(self, q: &str) -> Self {
        self.alloc("cpu", q)
    }
    pub fn memory(self, q: &str) -> Self {
        self.alloc("memory", q)
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        set(&mut self.0.metadata.labels, k, v);
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        set(&mut self.0.metadata.annotations, k, v);
        self
    }
    /// In the pool `kubedrs.io/pool=<p>` (the usual HostPool selector).
    pub fn in_pool(self, p: &str) -> Self {
        self.label(keys::POOL, p)
    }
    pub fn cordoned(mut self) -> Self {
        if let Some(s) = self.0.spec.as_mut() {
            s.unschedulable = Some(true);
        }
        self
    }
    pub fn not_ready(mut self) -> Self {
        if let Some(c) = self.0.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            c[0].status = "False".into();
        }
        self
    }
    /// `kubedrs.io/maintenance: "true"`.
    pub fn maintenance(self) -> Self {
        self.annotation(keys::MAINTENANCE, "true")
    }
    pub fn cpu_models(mut self, models: &[&str]) -> Self {
        for m in models {
            self = self.label(&format!("{}{m}", keys::KUBEVIRT_CPU_MODEL_PREFIX), "true");
        }
        self
    }
    pub fn host_model(self, m: &str) -> Self {
        self.label(&format!("{}{m}", keys::KUBEVIRT_HOST_MODEL_PREFIX), "true")
    }
    pub fn vendor(self, v: &str) -> Self {
        self.label(&format!("{}{v}", keys::KUBEVIRT_CPU_VENDOR_PREFIX), "true")
    }
    pub fn build(self) -> Node {
        self.0
    }
}

// --- Namespace -------------------------------------------------------------------------------------------

pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        ..Default::default()
    }
}

// --- VMI -------------------------------------------------------------------------------------------------

pub struct VmiBuilder(VirtualMachineInstance);

/// A running VMI, `LiveMigratable=True`, 1 vCPU, no memory yet, on no node.
pub fn vmi(name: &str) -> VmiBuilder {
    let mut v = VirtualMachineInstance::new(&split(name).1, VirtualMachineInstanceSpec::default());
    v.metadata = meta(name);
    v.status = Some(VirtualMachineInstanceStatus {
        phase: Some("Running".into()),
        conditions: vec![VmiCondition { type_: LIVE_MIGRATABLE.into(), status: "True".into(), ..Default::default() }],
        ..Default::default()
    });
    VmiBuilder(v)
}

impl VmiBuilder {
    fn status(&mut self) -> &mut VirtualMachineInstanceStatus {
        self.0.status.get_or_insert_with(Default::default)
    }
    fn cpu_spec(&mut self) -> &mut CpuSpec {
        self.0.spec.domain.cpu.get_or_insert_with(Default::default)
    }
    fn resources(&mut self) -> &mut ResourceRequirements {
        self.0.spec.domain.resources.get_or_insert_with(Default::default)
    }
    pub fn on(mut self, node: &str) -> Self {
        self.status().node_name = Some(node.into());
        self
    }
    /// Waiting for kubedrs to place it (`schedulerName: kubedrs`, phase Pending, no node).
    pub fn pending(mut self) -> Self {
        self.0.spec.scheduler_name = Some(keys::SCHEDULER_NAME.into());
        let s = self.status();
        s.phase = Some("Pending".into());
        s.node_name = None;
        s.conditions.clear();
        self
    }
    pub fn phase(mut self, p: &str) -> Self {
        self.status().phase = Some(p.into());
        self
    }
    /// `cores: n` (one socket, one thread).
    pub fn cpus(mut self, n: u32) -> Self {
        self.cpu_spec().cores = Some(n);
        self
    }
    pub fn model(mut self, m: &str) -> Self {
        self.cpu_spec().model = Some(m.into());
        self
    }
    /// Guest memory.
    pub fn memory(mut self, q: &str) -> Self {
        self.0.spec.domain.memory.get_or_insert_with(Default::default).guest = Some(q.into());
        self
    }
    pub fn requests(mut self, cpu: &str, memory: &str) -> Self {
        self.resources().requests =
            Some([("cpu".to_string(), cpu.into()), ("memory".to_string(), memory.into())].into());
        self
    }
    pub fn limits(mut self, cpu: &str, memory: &str) -> Self {
        self.resources().limits = Some([("cpu".to_string(), cpu.into()), ("memory".to_string(), memory.into())].into());
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        set(&mut self.0.metadata.labels, k, v);
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        set(&mut self.0.metadata.annotations, k, v);
        self
    }
    pub fn not_live_migratable(mut self) -> Self {
        let s = self.status();
        s.conditions.retain(|c| c.type_ != LIVE_MIGRATABLE);
        s.conditions.push(VmiCondition {
            type_: LIVE_MIGRATABLE.into(),
            status: "False".into(),
            reason: Some("DisksNotLiveMigratable".into()),
            ..Default::default()
        });
        self
    }
    pub fn build(self) -> VirtualMachineInstance {
        self.0
    }
}

// --- VM --------------------------------------------------------------------------------------------------

pub struct VmBuilder(VirtualMachine);

/// A VirtualMachine with `runStrategy: Always` and an empty template.
pub fn vm(name: &str) -> VmBuilder {
    let mut v = VirtualMachine::new(
        &split(name).1,
        VirtualMachineSpec {
            run_strategy: Some("Always".into()),
            template: Some(VirtualMachineInstanceTemplateSpec::default()),
            ..Default::default()
        },
    );
    v.metadata = meta(name);
    VmBuilder(v)
}

impl VmBuilder {
    pub fn label(mut self, k: &str, v: &str) -> Self {
        set(&mut self.0.metadata.labels, k, v);
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        set(&mut self.0.metadata.annotations, k, v);
        self
    }
    pub fn build(self) -> VirtualMachine {
        self.0
    }
}

// --- Pods ------------------------------------------------------------------------------------------------

pub struct PodBuilder(Pod);

/// A running pod with one container and no requests.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(Pod {
        metadata: meta(name),
        spec: Some(PodSpec {
            containers: vec![Container { name: "main".into(), ..Default::default() }],
            ..Default::default()
        }),
        status: Some(PodStatus { phase: Some("Running".into()), ..Default::default() }),
    })
}

/// The virt-launcher pod of a VMI (labels and owner reference as KubeVirt sets them), on the VMI's node.
pub fn launcher(vmi: &VirtualMachineInstance) -> PodBuilder {
    let ns = vmi.metadata.namespace.clone().unwrap_or_default();
    let name = vmi.metadata.name.clone().unwrap_or_default();
    let mut b = pod(&format!("{ns}/virt-launcher-{name}-abcde")).label(keys::KUBEVIRT_APP, "virt-launcher");
    b.0.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachineInstance".into(),
        name,
        uid: "uid".into(),
        controller: Some(true),
        ..Default::default()
    }]);
    match vmi.node_name() {
        Some(n) => b.on(n),
        None => b,
    }
}

impl PodBuilder {
    pub fn on(mut self, node: &str) -> Self {
        if let Some(s) = self.0.spec.as_mut() {
            s.node_name = Some(node.into());
        }
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        set(&mut self.0.metadata.labels, k, v);
        self
    }
    fn res(
        mut self,
        which: fn(&mut PodResources) -> &mut Option<BTreeMap<String, KQuantity>>,
        cpu: &str,
        mem: &str,
    ) -> Self {
        if let Some(s) = self.0.spec.as_mut() {
            let r = s.containers[0].resources.get_or_insert_with(Default::default);
            *which(r) = Some(
                [("cpu".to_string(), KQuantity(cpu.into())), ("memory".to_string(), KQuantity(mem.into()))].into(),
            );
        }
        self
    }
    pub fn requests(self, cpu: &str, memory: &str) -> Self {
        self.res(|r| &mut r.requests, cpu, memory)
    }
    pub fn limits(self, cpu: &str, memory: &str) -> Self {
        self.res(|r| &mut r.limits, cpu, memory)
    }
    pub fn phase(mut self, p: &str) -> Self {
        if let Some(s) = self.0.status.as_mut() {
            s.phase = Some(p.into());
        }
        self
    }
    pub fn build(self) -> Pod {
        self.0
    }
}

/// metrics.k8s.io usage of a pod at `secs`.
pub fn pod_metrics(pod: &Pod, secs: u64, cpu: &str, memory: &str) -> PodMetrics {
    PodMetrics {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            ..Default::default()
        },
        timestamp: Some(at(secs)),
        window: Some("30s".into()),
        containers: vec![ContainerMetrics {
            name: "compute".into(),
            usage: [("cpu".to_string(), cpu.into()), ("memory".to_string(), memory.into())].into(),
        }],
    }
}

// --- HostPool --------------------------------------------------------------------------------------------

pub struct PoolBuilder(HostPool);

/// A HostPool with the defaults of the CRD and an empty node selector (matches every node).
pub fn pool(name: &str) -> PoolBuilder {
    let spec = HostPoolSpec::default();
    let mut p = HostPool::new(name, spec);
    p.metadata.generation = Some(1);
    PoolBuilder(p)
}

impl PoolBuilder {
    /// Adds `key=value` to the node selector's matchLabels.
    pub fn selects(mut self, k: &str, v: &str) -> Self {
        self.0.spec.node_selector.match_labels.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
        self
    }
    pub fn honor_cordon(mut self) -> Self {
        self.0.spec.maintenance.honor_cordon = true;
        self
    }
    /// Replaces the spec's fields given in YAML (e.g. `"rules: [...]"`), keeping the others.
    pub fn with(mut self, yaml: &str) -> Self {
        let mut spec = serde_json::to_value(&self.0.spec).unwrap_or_default();
        if let (Some(obj), Ok(serde_json::Value::Object(extra))) =
            (spec.as_object_mut(), serde_yaml::from_str::<serde_json::Value>(yaml))
        {
            obj.extend(extra);
        }
        if let Ok(s) = serde_json::from_value(spec) {
            self.0.spec = s;
        }
        self
    }
    pub fn build(self) -> HostPool {
        self.0
    }
}

// --- Migrations ------------------------------------------------------------------------------------------

pub struct MigrationBuilder(VirtualMachineInstanceMigration);

/// A migration kubedrs created for `vmi` (`namespace/name`) in pool `pool`, `n1` -> `n2`, phase Running.
pub fn migration(vmi: &str, pool: &str) -> MigrationBuilder {
    let (ns, name) = split(vmi);
    let mut m = VirtualMachineInstanceMigration::for_move(
        ns.as_deref().unwrap_or_default(),
        &name,
        "n1",
        "n2",
        pool,
        Reason::Balance,
    );
    m.metadata.name = Some(format!("kubedrs-{name}-x"));
    m.status =
        Some(VirtualMachineInstanceMigrationStatus { phase: Some(MigrationPhase::Running), ..Default::default() });
    MigrationBuilder(m)
}

impl MigrationBuilder {
    pub fn from(mut self, n: &str) -> Self {
        set(&mut self.0.metadata.annotations, keys::SOURCE_NODE, n);
        self
    }
    pub fn to(mut self, n: &str) -> Self {
        set(&mut self.0.metadata.annotations, keys::TARGET_NODE, n);
        self.0.spec.added_node_selector = Some([(keys::HOSTNAME.to_string(), n.to_string())].into());
        self
    }
    /// Not created by kubedrs (no labels or annotations).
    pub fn foreign(mut self) -> Self {
        self.0.metadata.labels = None;
        self.0.metadata.annotations = None;
        self.0.spec.added_node_selector = None;
        self
    }
    pub fn phase(mut self, p: &str) -> Self {
        self.0.status.get_or_insert_with(Default::default).phase = Some(MigrationPhase::from(p));
        self
    }
    /// Succeeded at `secs`.
    pub fn succeeded_at(mut self, secs: u64) -> Self {
        let st = self.0.status.get_or_insert_with(Default::default);
        st.phase = Some(MigrationPhase::Succeeded);
        st.migration_state.get_or_insert_with(Default::default).end_timestamp = Some(at(secs));
        self
    }
    /// Failed at `secs`.
    pub fn failed_at(mut self, secs: u64) -> Self {
        let st = self.0.status.get_or_insert_with(Default::default);
        st.phase = Some(MigrationPhase::Failed);
        st.migration_state.get_or_insert_with(Default::default).end_timestamp = Some(at(secs));
        self
    }
    pub fn build(self) -> VirtualMachineInstanceMigration {
        self.0
    }
}

/// Pool `prod` of two 16-core nodes; n1 is in maintenance and runs `shop/a` (1 vCPU, 1Gi) with its launcher.
pub fn one_vm_leaving_n1() -> crate::observe::Cluster {
    use std::sync::Arc;
    let a = vmi("shop/a").on("n1").cpus(1).memory("1Gi").build();
    crate::observe::Cluster {
        pools: vec![Arc::new(pool("prod").selects(keys::POOL, "prod").build())],
        nodes: vec![
            Arc::new(node("n1").cpu("16").memory("64Gi").in_pool("prod").maintenance().build()),
            Arc::new(node("n2").cpu("16").memory("64Gi").in_pool("prod").build()),
        ],
        pods: vec![Arc::new(launcher(&a).build().into())],
        vmis: vec![Arc::new(a)],
        ..Default::default()
    }
}
