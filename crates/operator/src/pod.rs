//! What kubedrs keeps of a pod: [`CachedPod`], read straight from the API server's JSON.
//!
//! Pods are most of what kubedrs caches (every VM has a virt-launcher pod, and the cluster's other pods take
//! node capacity too), and observe reads little of them: the name, the labels that tie a launcher pod to
//! its VMI or migration, the controller owner, the node, the scheduler, the node selector, the phase, and
//! the requests and limits as the scheduler counts them. k8s-openapi's `Pod` would hold all of it in
//! structs of kilobytes before any data (a `Container` is 2.3 KiB, a launcher pod has four); a
//! `CachedPod` holds the sums, computed once when the object is read.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubedrs_engine::Resources;
use serde::Deserialize;

use crate::keys;
use crate::observe::{MAX_CPU_MILLIS, MAX_MEMORY_BYTES, cpu_millis, memory_bytes};

/// A pod as kubedrs caches it. Deserializes from a Pod's JSON (unknown fields ignored); the fields that
/// are read must still have their Kubernetes types, or the pod is reported unreadable like any object.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, kube::Resource)]
#[resource(inherit = Pod)]
#[serde(from = "WirePod")]
pub struct CachedPod {
    /// Name, namespace, uid, deletion, the controller owner and the labels observe reads
    /// ([`KEPT_LABELS`]); no annotations.
    pub metadata: ObjectMeta,
    pub node_name: Option<String>,
    pub scheduler_name: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    /// `status.phase`; `None` before the API server sets it.
    pub phase: Option<String>,
    /// max(sum of the containers' requests, the largest init container's), without the overhead.
    pub requests: Resources,
    /// `spec.overhead` (KubeVirt's virt-launcher, counted by the scheduler on top of the requests).
    pub overhead: Resources,
    /// The sums of the containers' CPU and memory limits, when every container has one.
    pub limits: (Option<u64>, Option<u64>),
}

/// The pod labels observe reads: which pods are virt-launchers, and which launcher is a migration's target.
pub const KEPT_LABELS: [&str; 2] = [keys::KUBEVIRT_APP, keys::MIGRATION_JOB_LABEL];

impl CachedPod {
    /// Requests as the scheduler counts them: [`CachedPod::requests`] plus the overhead.
    pub fn total_requests(&self) -> Resources {
        self.requests.saturating_add(self.overhead)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// The node it is bound to (an empty `nodeName` is none).
    pub fn node(&self) -> Option<&str> {
        self.node_name.as_deref().filter(|n| !n.is_empty())
    }

    /// Not being deleted and not finished: it holds its node's capacity.
    pub fn is_live(&self) -> bool {
        let phase = self.phase.as_deref().unwrap_or("Pending");
        self.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
    }
}

impl crate::tolerant::Stub for CachedPod {
    fn stub(metadata: ObjectMeta) -> Self {
        CachedPod { metadata, ..CachedPod::default() }
    }
}

/// Tests, fixtures and `kubedrs plan` build or list whole pods: read as the watch would read them.
impl From<&Pod> for CachedPod {
    fn from(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let wire = |c: &k8s_openapi::api::core::v1::Container| WireContainer { resources: c.resources.clone() };
        WirePod {
            metadata: pod.metadata.clone(),
            spec: spec.map(|s| WireSpec {
                node_name: s.node_name.clone(),
                scheduler_name: s.scheduler_name.clone(),
                node_selector: s.node_selector.clone(),
                overhead: s.overhead.clone(),
                containers: Some(s.containers.iter().map(wire).collect()),
                init_containers: s.init_containers.as_ref().map(|c| c.iter().map(wire).collect()),
            }),
            status: pod.status.as_ref().map(|s| WireStatus { phase: s.phase.clone() }),
        }
        .into()
    }
}

impl From<Pod> for CachedPod {
    fn from(pod: Pod) -> Self {
        CachedPod::from(&pod)
    }
}

// What is parsed of a pod's JSON: the fields observe reads, with their Kubernetes types.

#[derive(Deserialize)]
struct WirePod {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: Option<WireSpec>,
    status: Option<WireStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSpec {
    node_name: Option<String>,
    scheduler_name: Option<String>,
    node_selector: Option<BTreeMap<String, String>>,
    overhead: Option<BTreeMap<String, Quantity>>,
    containers: Option<Vec<WireContainer>>,
    init_containers: Option<Vec<WireContainer>>,
}

#[derive(Deserialize)]
struct WireContainer {
    resources: Option<ResourceRequirements>,
}

#[derive(Deserialize)]
struct WireStatus {
    phase: Option<String>,
}

/// CPU and memory of a quantity map; absent or unparseable quantities (above the most kubedrs models
/// included) count as zero.
fn quantities(m: Option<&BTreeMap<String, Quantity>>) -> Resources {
    Resources::new(
        m.and_then(|m| m.get("cpu")).and_then(|q| cpu_millis(&q.0).ok()).unwrap_or(0),
        m.and_then(|m| m.get("memory")).and_then(|q| memory_bytes(&q.0).ok()).unwrap_or(0),
    )
}

/// A sum held to the most a quantity may say, as every other figure observe hands the engine.
fn bounded(r: Resources) -> Resources {
    Resources::new(r.cpu_millis.min(MAX_CPU_MILLIS), r.memory_bytes.min(MAX_MEMORY_BYTES))
}

impl From<WirePod> for CachedPod {
    fn from(w: WirePod) -> Self {
        let mut metadata = w.metadata;
        metadata.managed_fields = None;
        metadata.annotations = None;
        metadata.generate_name = None;
        if let Some(l) = metadata.labels.as_mut() {
            l.retain(|k, _| KEPT_LABELS.contains(&k.as_str()));
        }
        if let Some(o) = metadata.owner_references.as_mut() {
            o.retain(|o| o.controller == Some(true) || o.kind == "VirtualMachineInstance");
        }
        let spec = w.spec;
        let containers = spec.as_ref().and_then(|s| s.containers.as_deref()).unwrap_or_default();
        let inits = spec.as_ref().and_then(|s| s.init_containers.as_deref()).unwrap_or_default();
        let req = |c: &WireContainer| quantities(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
        let sum = containers.iter().fold(Resources::ZERO, |acc, c| acc.saturating_add(req(c)));
        let init = inits.iter().map(req).fold(Resources::ZERO, |a, b| {
            Resources::new(a.cpu_millis.max(b.cpu_millis), a.memory_bytes.max(b.memory_bytes))
        });
        let requests = Resources::new(sum.cpu_millis.max(init.cpu_millis), sum.memory_bytes.max(init.memory_bytes));
        // A pod has a limit only when every container has one (none without a spec).
        let (mut cpu, mut mem) = if spec.is_some() { (Some(0u64), Some(0u64)) } else { (None, None) };
        for c in containers {
            let l = c.resources.as_ref().and_then(|r| r.limits.as_ref());
            let c_cpu = l.and_then(|l| l.get("cpu")).and_then(|q| cpu_millis(&q.0).ok());
            let c_mem = l.and_then(|l| l.get("memory")).and_then(|q| memory_bytes(&q.0).ok());
            cpu = cpu.zip(c_cpu).map(|(a, b)| a.saturating_add(b).min(MAX_CPU_MILLIS));
            mem = mem.zip(c_mem).map(|(a, b)| a.saturating_add(b).min(MAX_MEMORY_BYTES));
        }
        let overhead = quantities(spec.as_ref().and_then(|s| s.overhead.as_ref()));
        let (node_name, scheduler_name, node_selector) = match spec {
            Some(s) => (s.node_name, s.scheduler_name, s.node_selector.unwrap_or_default()),
            None => (None, None, BTreeMap::new()),
        };
        CachedPod {
            metadata,
            node_name,
            scheduler_name,
            node_selector,
            phase: w.status.and_then(|s| s.phase),
            requests: bounded(requests),
            overhead,
            limits: (cpu, mem),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fixtures::{launcher, pod, vmi};
    use k8s_openapi::api::core::v1::{Container, ContainerStatus, EnvVar, Volume};
    use proptest::prelude::*;

    /// Read from the pod's JSON, as the watch reads it.
    fn read(p: &Pod) -> CachedPod {
        serde_json::from_value(serde_json::to_value(p).unwrap()).unwrap()
    }

    #[test]
    fn a_cached_pod_keeps_what_observe_reads_and_nothing_else() {
        let v = vmi("ns/a").build();
        let mut p = launcher(&v).on("n1").requests("2", "4Gi").limits("2", "4Gi").phase("Running").build();
        p.metadata.annotations = Some([("kubevirt.io/domain".to_string(), "a".to_string())].into());
        p.metadata.labels.get_or_insert_default().insert("vm.kubevirt.io/name".into(), "a".into());
        p.metadata.labels.get_or_insert_default().insert(keys::MIGRATION_JOB_LABEL.into(), "m-uid".into());
        let spec = p.spec.as_mut().unwrap();
        spec.scheduler_name = Some("kubedrs".into());
        spec.node_selector = Some([("kubevirt.io/schedulable".to_string(), "true".to_string())].into());
        spec.overhead = Some([("memory".to_string(), Quantity("200Mi".into()))].into());
        spec.volumes = Some(vec![Volume { name: "private".into(), ..Volume::default() }; 20]);
        spec.containers[0].env = Some(vec![EnvVar { name: "XDG_CACHE_HOME".into(), ..EnvVar::default() }; 20]);
        spec.init_containers =
            Some(vec![Container { name: "init".into(), image: Some("virt-launcher".into()), ..Container::default() }]);
        p.status.as_mut().unwrap().container_statuses =
            Some(vec![ContainerStatus { name: "compute".into(), ..ContainerStatus::default() }]);

        let c = read(&p);
        assert_eq!(c, CachedPod::from(&p), "read from JSON or converted: the same");
        assert_eq!(c.requests, Resources::new(2000, 4 << 30));
        assert_eq!(c.overhead, Resources::new(0, 200 << 20));
        assert_eq!(c.total_requests(), Resources::new(2000, (4 << 30) + (200 << 20)));
        assert_eq!(c.limits, (Some(2000), Some(4 << 30)));
        assert_eq!(
            (c.node(), c.scheduler_name.as_deref(), c.phase.as_deref()),
            (Some("n1"), Some("kubedrs"), Some("Running"))
        );
        assert_eq!(c.node_selector.get("kubevirt.io/schedulable").map(String::as_str), Some("true"));
        assert_eq!(crate::observe::launcher_vmi_key(&c).as_deref(), Some("ns/a"));
        assert_eq!(c.label(keys::MIGRATION_JOB_LABEL), Some("m-uid"));
        assert_eq!(c.label("vm.kubevirt.io/name"), None, "a label observe does not read");
        assert_eq!(c.metadata.annotations, None);
        assert_eq!(
            (c.metadata.name.as_deref(), c.metadata.namespace.as_deref()),
            (Some("virt-launcher-a-abcde"), Some("ns"))
        );
        assert!(c.is_live());
    }

    #[test]
    fn finished_deleted_and_unbound_pods() {
        assert!(!read(&pod("ns/p").phase("Succeeded").build()).is_live());
        assert!(!read(&pod("ns/p").phase("Failed").build()).is_live());
        let mut deleting = pod("ns/p").build();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(!read(&deleting).is_live());
        let mut unbound = pod("ns/p").build();
        unbound.spec.as_mut().unwrap().node_name = Some(String::new());
        assert_eq!(read(&unbound).node(), None);
        let bare = Pod { metadata: pod("ns/p").build().metadata, ..Pod::default() };
        let c = read(&bare);
        assert_eq!((c.requests, c.limits, c.phase.as_deref()), (Resources::ZERO, (None, None), None));
        assert!(c.is_live(), "no phase yet: pending");
    }

    #[test]
    fn a_field_of_the_wrong_type_makes_the_pod_unreadable_with_its_path() {
        let mut json = serde_json::to_value(pod("ns/p").on("n1").build()).unwrap();
        json["spec"]["nodeName"] = serde_json::json!(7);
        let t = crate::tolerant::Tolerant::<CachedPod>::from_value(&json);
        let crate::tolerant::Tolerant::Unreadable(u) = t else { panic!("read a pod whose nodeName is 7") };
        assert_eq!(u.field, "spec.nodeName");
        assert_eq!(u.meta.name.as_deref(), Some("p"));
    }

    /// A CPU quantity and the millicores it is (0 when kubedrs cannot read it).
    fn cpu() -> impl Strategy<Value = Option<(String, u64)>> {
        prop_oneof![
            Just(None),
            (0u64..64).prop_map(|n| Some((n.to_string(), n * 1000))),
            (0u64..64_000).prop_map(|n| Some((format!("{n}m"), n))),
            Just(Some(("lots".to_string(), 0))),
        ]
    }

    /// A memory quantity and the bytes it is (0 when kubedrs cannot read it).
    fn memory() -> impl Strategy<Value = Option<(String, u64)>> {
        prop_oneof![
            Just(None),
            (0u64..1 << 40).prop_map(|n| Some((n.to_string(), n))),
            (0u64..512).prop_map(|n| Some((format!("{n}Mi"), n << 20))),
            (0u64..8).prop_map(|n| Some((format!("{n}.5Gi"), (2 * n + 1) << 29))),
            Just(Some(("lots".to_string(), 0))),
        ]
    }

    type Q = Option<(String, u64)>;

    fn quantity_map(cpu: &Q, memory: &Q) -> Option<BTreeMap<String, Quantity>> {
        let m: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", memory)]
            .into_iter()
            .filter_map(|(k, q)| Some((k.to_string(), Quantity(q.as_ref()?.0.clone()))))
            .collect();
        (!m.is_empty()).then_some(m)
    }

    fn value(q: &Q) -> u64 {
        q.as_ref().map_or(0, |q| q.1)
    }

    proptest! {
        /// Whatever the containers (requests and limits or none, quantities that do not parse, init
        /// containers larger or smaller than the sum, an overhead), the cached pod holds the scheduler's
        /// figures, computed here from the numbers the quantities were made of.
        #[test]
        fn a_cached_pod_counts_requests_and_limits_as_the_scheduler(
            containers in proptest::collection::vec((cpu(), memory(), cpu(), memory()), 0..4),
            inits in proptest::collection::vec((cpu(), memory()), 0..3),
            overhead in (cpu(), memory()),
        ) {
            let container = |name: String, requests, limits| Container {
                name,
                resources: Some(ResourceRequirements { requests, limits, ..ResourceRequirements::default() }),
                ..Container::default()
            };
            let mut p = launcher(&vmi("ns/a").build()).on("n1").build();
            let spec = p.spec.as_mut().unwrap();
            spec.containers = containers
                .iter()
                .enumerate()
                .map(|(i, (rc, rm, lc, lm))| container(format!("c{i}"), quantity_map(rc, rm), quantity_map(lc, lm)))
                .collect();
            spec.init_containers = Some(
                inits.iter().enumerate().map(|(i, (c, m))| container(format!("i{i}"), quantity_map(c, m), None)).collect(),
            );
            spec.overhead = quantity_map(&overhead.0, &overhead.1);
            let c = read(&p);

            let sum_cpu: u64 = containers.iter().map(|c| value(&c.0)).sum();
            let sum_mem: u64 = containers.iter().map(|c| value(&c.1)).sum();
            let init_cpu = inits.iter().map(|i| value(&i.0)).max().unwrap_or(0);
            let init_mem = inits.iter().map(|i| value(&i.1)).max().unwrap_or(0);
            prop_assert_eq!(c.requests, Resources::new(sum_cpu.max(init_cpu), sum_mem.max(init_mem)));
            prop_assert_eq!(c.overhead, Resources::new(value(&overhead.0), value(&overhead.1)));
            // A limit only when every container has one that reads.
            let all = |f: fn(&(Q, Q, Q, Q)) -> &Q| {
                containers.iter().all(|c| f(c).as_ref().is_some_and(|q| q.0 != "lots")).then(|| containers.iter().map(|c| value(f(c))).sum::<u64>())
            };
            prop_assert_eq!(c.limits, (all(|c| &c.2), all(|c| &c.3)));
        }
    }
}
