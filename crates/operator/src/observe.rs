//! Observe: Kubernetes objects -> one engine [`Snapshot`] per HostPool. Pure and synchronous: the
//! controller hands in what its reflector stores hold, tests hand in fixtures.
//!
//! The steps, in order (membership depends on every pool's selector, so step 1-2 read every spec; steps
//! 3-6 translate only the pool being passed, see [`observe_pools`]):
//! 1. validate each HostPool spec ([`super::crd::HostPoolSpec::validate`]); an invalid pool gets no snapshot;
//! 2. node membership: a node matched by one pool belongs to it; matched by two or more it is a conflict,
//!    reported on each of those pools and left out of all of them;
//! 3. node state and capacity (see [`node_state`], [`node_capacity`]); a node with no CPU or memory left for
//!    VMs is left out of its pool (a `NoCapacity` warning), as are quantities above [`MAX_CPU_MILLIS`] and
//!    [`MAX_MEMORY_BYTES`] (refused like unparseable ones): the engine never gets a snapshot it refuses;
//! 4. VM membership (api.md): the VM's `kubedrs.io/pool` label, else its namespace's, else its node's pool;
//! 5. VM figures from the VMI (and its VM and virt-launcher pod): reservation, limit, shares, demand,
//!    CPU requirement, automation, live-migratability;
//! 6. migrations in flight (unfinished VMIMs of the pool's VMs) and history (kubedrs' finished ones).
//!
//! Nothing here fails on one bad object: a bad annotation becomes the default plus a [`Warning`] naming the
//! object, which the controller turns into an Event; an object the reflectors could not parse at all is
//! not in the lists ([`crate::tolerant`]) and gets an `Unreadable` warning naming its field.
//!
//! Guesses, documented where they are made: KubeVirt's CPU request default (vCPUs / 10), its memory
//! overhead (when no virt-launcher pod is seen), demand without metrics (the reservation for CPU, the guest
//! memory for memory), dirty rate (unknown: 0).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node as KubeNode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::actuate::{PendingPod, PodKind};
use super::crd::{HostPool, InvalidSpec, NodeConflict, PoolConfig};
pub use super::demand::DemandWindow;
use super::keys;
use super::kubevirt::{
    Quantity, VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceMigration, VirtualMachineInstanceSpec,
};
use super::maintenance::NodeView;
use super::pod::CachedPod;
use kubedrs_engine::{
    Allocation, CpuRequirement, InFlight, Labels, Node, NodeState, PastMove, Resources, Shares, Snapshot, Vm,
    VmAutomation,
};

/// The most CPU (millicores: a million cores) one VM, pod or node may count for: far above any machine,
/// far below where the engine's sums over thousands of them could overflow. A quantity above it is
/// refused like one that does not parse (the default, and a warning naming the field).
pub const MAX_CPU_MILLIS: u64 = 1_000_000_000;
/// The most memory one VM, pod or node may count for (1 PiB), for the same reason.
pub const MAX_MEMORY_BYTES: u64 = 1 << 50;

fn at_most(v: u64, max: u64, unit: &str) -> Result<u64, String> {
    if v <= max { Ok(v) } else { Err(format!("{v} {unit} is above the most kubedrs counts for one object ({max})")) }
}

/// A CPU quantity in millicores, refused above [`MAX_CPU_MILLIS`].
pub fn cpu_millis(q: &str) -> Result<u64, String> {
    at_most(kubedrs_spec::quantity::cpu_millis(q).map_err(|e| e.to_string())?, MAX_CPU_MILLIS, "millicores")
}

/// A memory quantity in bytes, refused above [`MAX_MEMORY_BYTES`].
pub fn memory_bytes(q: &str) -> Result<u64, String> {
    at_most(kubedrs_spec::quantity::memory_bytes(q).map_err(|e| e.to_string())?, MAX_MEMORY_BYTES, "bytes")
}

/// Everything observe reads, as the reflector stores hold it.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub pools: Vec<Arc<HostPool>>,
    pub nodes: Vec<Arc<KubeNode>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub vms: Vec<Arc<VirtualMachine>>,
    pub vmis: Vec<Arc<VirtualMachineInstance>>,
    /// All pods: virt-launcher pods give the VMs' real requests; the others use node capacity.
    pub pods: Vec<Arc<CachedPod>>,
    pub migrations: Vec<Arc<VirtualMachineInstanceMigration>>,
    /// Objects the reflectors could not read (left out of the lists above): each gets an `Unreadable`
    /// warning.
    pub skipped: Vec<crate::tolerant::SkippedObject>,
}

/// Something odd about one object, for an Event on it: the default was used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    /// `VirtualMachine`, `VirtualMachineInstance`, `Node`, `HostPool`...
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    /// Short CamelCase reason for the Event.
    pub reason: &'static str,
    pub message: String,
}

/// What observe found for one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolObservation {
    pub name: String,
    /// `metadata.generation` of the HostPool the observation was made from (for `observedGeneration`).
    pub generation: Option<i64>,
    /// The validated spec, or why it is invalid.
    pub config: Result<PoolConfig, InvalidSpec>,
    /// The engine's input; `None` when the spec is invalid.
    pub snapshot: Option<Snapshot>,
    /// Nodes this pool matches that another pool matches too (left out of the snapshot).
    pub conflicting_nodes: Vec<NodeConflict>,
    /// VMs of the pool running on a node outside it (`namespace/name`, node): left out of the snapshot,
    /// reported, since the engine's snapshot only knows the pool's nodes.
    pub vms_outside: Vec<(String, String)>,
    /// VMs whose demand came from the fallback (no metrics yet).
    pub vms_without_metrics: Vec<String>,
}

/// The result of one observation over the whole cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// One per HostPool, sorted by name.
    pub pools: Vec<PoolObservation>,
    /// Per-object warnings (bad annotations, VMs naming a pool that does not exist...), sorted.
    pub warnings: Vec<Warning>,
}

impl Observation {
    pub fn pool(&self, name: &str) -> Option<&PoolObservation> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// Observes every pool. `now` is in seconds since the Unix epoch (the clock of [`Snapshot::now`]).
pub fn observe(cluster: &Cluster, demand: &DemandWindow, now: u64) -> Observation {
    observe_pools(cluster, demand, now, None)
}

/// Observes one pool (`only`), or every pool (`None`). Every spec is still read (membership depends on all
/// of them), but only the pool's nodes, VMs and migrations are translated: a pass over one pool costs what
/// that pool holds, not what the cluster holds. Warnings are those of the objects translated, plus the
/// cluster-wide ones (specs, conflicts, VMs naming no pool).
pub fn observe_pools(cluster: &Cluster, demand: &DemandWindow, now: u64, only: Option<&str>) -> Observation {
    let mut warnings: Vec<Warning> = cluster
        .skipped
        .iter()
        .map(|s| Warning {
            kind: s.kind,
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            reason: "Unreadable",
            message: s.message(),
        })
        .collect();
    let wanted = |pool: &str| only.is_none_or(|o| o == pool);

    // 1. Specs.
    let mut pools: Vec<(&HostPool, Result<PoolConfig, InvalidSpec>)> = cluster
        .pools
        .iter()
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            (p.as_ref(), p.spec.validate(&name))
        })
        .collect();
    pools.sort_by(|a, b| a.0.metadata.name.cmp(&b.0.metadata.name));

    // 2. Node membership.
    let mut node_pools: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in &cluster.nodes {
        let labels = labels_of(n.metadata.labels.as_ref());
        let name = n.metadata.name.as_deref().unwrap_or_default();
        let matched = node_pools.entry(name).or_default();
        for (p, cfg) in &pools {
            if let Ok(cfg) = cfg
                && cfg.node_selector.matches(&labels)
            {
                matched.push(p.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }
    // A node with no CPU or no memory left for VMs (no allocatable, or other pods take it all) is left
    // out of its pool, with a warning: the engine cannot weigh VMs on a node of capacity 0.
    let other_requests = non_vm_requests_per_node(&cluster.pods);
    let empty_nodes: BTreeSet<&str> = cluster
        .nodes
        .iter()
        .filter(|n| {
            let name = n.metadata.name.as_deref().unwrap_or_default();
            let (cap, _) = node_capacity(n, other_requests.get(name).copied().unwrap_or_default());
            cap.cpu_millis == 0 || cap.memory_bytes == 0
        })
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let pool_of_node = |node: &str| -> Option<&str> {
        if empty_nodes.contains(node) {
            return None;
        }
        match node_pools.get(node).map(Vec::as_slice) {
            Some([only]) => Some(*only),
            _ => None,
        }
    };

    // Indexes.
    let ns_labels: BTreeMap<&str, Labels> = cluster
        .namespaces
        .iter()
        .map(|n| (n.metadata.name.as_deref().unwrap_or_default(), labels_of(n.metadata.labels.as_ref())))
        .collect();
    let vm_by_key: BTreeMap<String, &VirtualMachine> =
        cluster.vms.iter().map(|v| (key_of(&v.metadata), v.as_ref())).collect();
    let launchers = launcher_pods(&cluster.pods);
    let vmi_by_key: BTreeMap<String, &VirtualMachineInstance> =
        cluster.vmis.iter().map(|v| (v.key(), v.as_ref())).collect();
    let pool_names: BTreeSet<&str> = pools.iter().filter_map(|(p, _)| p.metadata.name.as_deref()).collect();

    // 3. Nodes per pool.
    let mut nodes_of: BTreeMap<&str, Vec<Node>> = BTreeMap::new();
    let mut conflicts_of: BTreeMap<&str, Vec<NodeConflict>> = BTreeMap::new();
    let mut vmis_per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &cluster.vmis {
        if let Some(n) = node_of(v, &launchers) {
            *vmis_per_node.entry(n).or_default() += 1;
        }
    }
    let vmis_on_node = |node: &str| vmis_per_node.get(node).copied().unwrap_or(0);
    // Every node's host model, for the `host-model` VMs on it (step 5).
    let mut host_model_of: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for n in &cluster.nodes {
        let name = n.metadata.name.as_deref().unwrap_or_default();
        let cpu = cpu_labels(n.metadata.labels.as_ref());
        host_model_of.insert(name, cpu.host_model.clone());
        let matched = &node_pools[name];
        if matched.len() > 1 {
            let conflict =
                NodeConflict { node: name.to_string(), pools: matched.iter().map(|s| s.to_string()).collect() };
            for p in matched {
                conflicts_of.entry(p).or_default().push(conflict.clone());
            }
            continue;
        }
        let Some(pool) = matched.first() else { continue };
        if !wanted(pool) {
            continue;
        }
        let honor_cordon = pools
            .iter()
            .find(|(p, _)| p.metadata.name.as_deref() == Some(pool))
            .and_then(|(_, c)| c.as_ref().ok())
            .is_some_and(|c| c.honor_cordon);
        let (capacity, cap_warnings) = node_capacity(n, other_requests.get(name).copied().unwrap_or_default());
        warnings.extend(cap_warnings);
        if empty_nodes.contains(name) {
            warnings.push(Warning {
                kind: "Node",
                namespace: None,
                name: name.to_string(),
                reason: "NoCapacity",
                message: format!(
                    "no CPU or no memory left for VMs ({} millicores, {} bytes after other pods' requests): left out \
                     of pool {pool}, its VMs untouched, until it has some",
                    capacity.cpu_millis, capacity.memory_bytes
                ),
            });
            continue;
        }
        if let Some(Err(e)) = maintenance_annotation(n) {
            warnings.push(Warning {
                kind: "Node",
                namespace: None,
                name: name.to_string(),
                reason: "BadAnnotation",
                message: format!("annotation {}: {e}; the node is not put in maintenance", keys::MAINTENANCE),
            });
        }
        nodes_of.entry(pool).or_default().push(Node {
            name: name.to_string(),
            capacity,
            state: node_state(n, honor_cordon, vmis_on_node(name) > 0),
            labels: labels_of(n.metadata.labels.as_ref()),
            cpu_vendor: cpu.vendor,
            cpu_models: cpu.models,
            host_model: cpu.host_model,
        });
    }

    // 4-5. VMs per pool.
    let mut vms_of: BTreeMap<&str, Vec<Vm>> = BTreeMap::new();
    let mut outside_of: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    let mut no_metrics_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut pool_of_vm: BTreeMap<String, &str> = BTreeMap::new();
    for vmi in &cluster.vmis {
        let node = node_of(vmi, &launchers);
        if !is_candidate(vmi, node) {
            continue;
        }
        let key = vmi.key();
        let ns = vmi.metadata.namespace.as_deref().unwrap_or_default();
        let vm = vm_by_key.get(&key).copied();
        let pool = match pool_label(vm, vmi)
            .map(|p| (p, "the VM's"))
            .or_else(|| ns_labels.get(ns).and_then(|l| l.get(keys::POOL)).map(|p| (p.as_str(), "its namespace's")))
        {
            Some((p, whose)) => match pool_names.get(p) {
                Some(p) => *p,
                None => {
                    warnings.push(vmi_warning(
                        vmi,
                        "UnknownPool",
                        format!("{whose} label {}={p} names no HostPool: kubedrs leaves the VM alone", keys::POOL),
                    ));
                    continue;
                }
            },
            None => match node.and_then(pool_of_node) {
                Some(p) => p,
                None => continue,
            },
        };
        if !wanted(pool) {
            continue;
        }
        if let Some(n) = node
            && pool_of_node(n) != Some(pool)
        {
            outside_of.entry(pool).or_default().push((key.clone(), n.to_string()));
            continue;
        }
        let launcher = launchers.get(&key).and_then(|pods| pick_launcher(pods, node));
        let host_model = node.and_then(|n| host_model_of.get(n)).and_then(Option::as_deref);
        let (mut v, vm_warnings) = vm_from(vmi, vm, launcher, host_model);
        v.node = node.map(str::to_string);
        warnings.extend(vm_warnings);
        match demand.demand(&key, now) {
            Some(d) => v.demand = d,
            None => no_metrics_of.entry(pool).or_default().push(key.clone()),
        }
        pool_of_vm.insert(key, pool);
        vms_of.entry(pool).or_default().push(v);
    }

    // 6. Migrations.
    let mut in_flight_of: BTreeMap<&str, Vec<InFlight>> = BTreeMap::new();
    let mut history_of: BTreeMap<&str, Vec<PastMove>> = BTreeMap::new();
    let day_ago = now.saturating_sub(24 * 3600);
    for m in &cluster.migrations {
        let vm = m.vm_key();
        let Some(&pool) = pool_of_vm.get(&vm) else { continue };
        if !m.is_finished() {
            let vmi_state = vmi_by_key.get(&vm).and_then(|v| v.status.as_ref()?.migration_state.as_ref());
            let source =
                m.source_node().map(str::to_string).or_else(|| vmi_by_key.get(&vm)?.node_name().map(str::to_string));
            let target = m.target_node().map(str::to_string).or_else(|| vmi_state?.target_node.clone());
            // Every unfinished migration counts, whoever created it (KubeVirt refuses a second one of a VMI,
            // and it holds its source's and the pool's budget); a target not known yet stays empty.
            // A target outside the pool (or not scheduled yet) is left empty: the VM stays counted on its source.
            let target =
                target.filter(|t| source.as_ref() != Some(t) && pool_of_node(t) == Some(pool)).unwrap_or_default();
            let Some(source) = source.filter(|s| pool_of_node(s) == Some(pool)) else { continue };
            in_flight_of.entry(pool).or_default().push(InFlight { vm, source, target });
        } else if m.pool() == Some(pool)
            && matches!(m.phase(), super::kubevirt::MigrationPhase::Succeeded | super::kubevirt::MigrationPhase::Failed)
            && let (Some(from), Some(to), Some(at)) = (m.source_node(), m.target_node(), m.finished_at())
        {
            // Failed migrations count too: the engine backs the VM off instead of retrying every pass.
            let succeeded = m.phase() == super::kubevirt::MigrationPhase::Succeeded;
            let at = secs(at);
            if at >= day_ago {
                history_of.entry(pool).or_default().push(PastMove {
                    vm,
                    from: from.into(),
                    to: to.into(),
                    at,
                    succeeded,
                });
            }
        }
    }
    // A VMI KubeVirt is evacuating (a drain's eviction set `status.evacuationNodeName`) gets its migration
    // from KubeVirt's evacuation controller, maybe before the cache shows it: it counts as in flight now, so
    // kubedrs never asks for a second migration that virt-api would refuse.
    for vmi in &cluster.vmis {
        let evacuating =
            vmi.status.as_ref().and_then(|s| s.evacuation_node_name.as_deref()).is_some_and(|n| !n.is_empty());
        let key = vmi.key();
        let (Some(&pool), Some(node)) = (pool_of_vm.get(&key), vmi.node_name()) else { continue };
        let list = in_flight_of.entry(pool).or_default();
        if evacuating && pool_of_node(node) == Some(pool) && list.iter().all(|m| m.vm != key) {
            list.push(InFlight { vm: key, source: node.to_string(), target: String::new() });
        }
    }

    // Assemble, in a stable order.
    let mut out = Vec::new();
    for (p, config) in pools {
        let name = p.metadata.name.as_deref().unwrap_or_default();
        if !wanted(name) {
            continue;
        }
        let snapshot = config.as_ref().ok().map(|cfg| {
            let mut nodes = nodes_of.remove(name).unwrap_or_default();
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            let mut vms = vms_of.remove(name).unwrap_or_default();
            vms.sort_by(|a, b| a.name.cmp(&b.name));
            let mut in_flight = in_flight_of.remove(name).unwrap_or_default();
            in_flight.sort_by(|a, b| (&a.vm, &a.source, &a.target).cmp(&(&b.vm, &b.source, &b.target)));
            let mut history = history_of.remove(name).unwrap_or_default();
            history.sort_by(|a, b| (a.at, &a.vm).cmp(&(b.at, &b.vm)));
            Snapshot { pool: cfg.settings.clone(), nodes, vms, rules: cfg.rules.clone(), in_flight, history, now }
        });
        out.push(PoolObservation {
            name: name.to_string(),
            generation: p.metadata.generation,
            config,
            snapshot,
            conflicting_nodes: sorted(conflicts_of.remove(name).unwrap_or_default(), |c| c.node.clone()),
            vms_outside: sorted(outside_of.remove(name).unwrap_or_default(), |v| v.clone()),
            vms_without_metrics: sorted(no_metrics_of.remove(name).unwrap_or_default(), |v| v.clone()),
        });
    }
    warnings.sort();
    warnings.dedup();
    Observation { pools: out, warnings }
}

fn sorted<T, K: Ord>(mut v: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    v.sort_by_key(|x| key(x));
    v
}

// ---------------------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------------------

/// Node state, in this order: the kubelet's Ready condition not True -> `NotReady` (a node that is down lets
/// nothing leave by live migration and takes nothing, even in maintenance: its evacuation waits until it is
/// back); maintenance asked (`kubedrs.io/maintenance: "true"`, or cordoned when the pool honours cordon) ->
/// `EnteringMaintenance` while VMs remain, else `InMaintenance`; cordoned -> `Cordoned`; else `Ready`.
pub fn node_state(node: &KubeNode, honor_cordon: bool, has_vms: bool) -> NodeState {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    if !ready {
        return NodeState::NotReady;
    }
    let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    if maintenance_asked(node) || (cordoned && honor_cordon) {
        return if has_vms { NodeState::EnteringMaintenance } else { NodeState::InMaintenance };
    }
    if cordoned { NodeState::Cordoned } else { NodeState::Ready }
}

/// The node's `kubedrs.io/maintenance` annotation read by the one grammar
/// ([`kubedrs_spec::annotations::maintenance_requested`]); `None` when it is not set.
pub fn maintenance_annotation(node: &KubeNode) -> Option<Result<bool, String>> {
    let value = node.metadata.annotations.as_ref()?.get(keys::MAINTENANCE)?;
    Some(kubedrs_spec::annotations::maintenance_requested(value))
}

/// Did the user ask for maintenance on this node (a valid `kubedrs.io/maintenance` annotation)?
pub fn maintenance_asked(node: &KubeNode) -> bool {
    matches!(maintenance_annotation(node), Some(Ok(true)))
}

/// Capacity for VMs: the node's `status.allocatable` minus the requests of the pods on it that are not
/// virt-launcher pods (system daemons, other workloads). A missing or bad allocatable is zero, with a
/// warning.
pub fn node_capacity(node: &KubeNode, other_pods: Resources) -> (Resources, Vec<Warning>) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut warnings = Vec::new();
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let mut get = |res: &str, parse: fn(&str) -> Result<u64, String>| -> u64 {
        match alloc.and_then(|a| a.get(res)) {
            Some(q) => parse(&q.0).unwrap_or_else(|e| {
                warnings.push(Warning {
                    kind: "Node",
                    namespace: None,
                    name: name.clone(),
                    reason: "BadAllocatable",
                    message: format!("status.allocatable.{res}: {e}; counted as 0"),
                });
                0
            }),
            None => 0,
        }
    };
    let total = Resources::new(get("cpu", cpu_millis), get("memory", memory_bytes));
    (total.saturating_sub(other_pods), warnings)
}

/// What KubeVirt's node-labeller says about a node's CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuLabels {
    pub vendor: Option<String>,
    pub models: BTreeSet<String>,
    pub host_model: Option<String>,
}

/// Reads `cpu-model.node.kubevirt.io/<Model>=true`, `host-model-cpu.node.kubevirt.io/<Model>=true` and
/// `cpu-vendor.node.kubevirt.io/<Vendor>=true`.
pub fn cpu_labels(labels: Option<&BTreeMap<String, String>>) -> CpuLabels {
    let mut out = CpuLabels::default();
    for (k, v) in labels.into_iter().flatten() {
        if v != "true" {
            continue;
        }
        if let Some(m) = k.strip_prefix(keys::KUBEVIRT_CPU_MODEL_PREFIX) {
            out.models.insert(m.to_string());
        } else if let Some(m) = k.strip_prefix(keys::KUBEVIRT_HOST_MODEL_PREFIX) {
            out.host_model.get_or_insert_with(|| m.to_string());
        } else if let Some(m) = k.strip_prefix(keys::KUBEVIRT_CPU_VENDOR_PREFIX) {
            out.vendor.get_or_insert_with(|| m.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------------------

/// The VMI a virt-launcher pod runs (`namespace/name`), from its controller owner reference.
pub fn launcher_vmi_key(pod: &CachedPod) -> Option<String> {
    let is_launcher = pod.label(keys::KUBEVIRT_APP) == Some("virt-launcher");
    let owner = pod.metadata.owner_references.as_ref()?.iter().find(|o| o.kind == "VirtualMachineInstance")?;
    is_launcher.then(|| format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), owner.name))
}

fn launcher_pods(pods: &[Arc<CachedPod>]) -> BTreeMap<String, Vec<&CachedPod>> {
    let mut out: BTreeMap<String, Vec<&CachedPod>> = BTreeMap::new();
    for p in pods.iter().filter(|p| p.is_live()) {
        if let Some(k) = launcher_vmi_key(p) {
            out.entry(k).or_default().push(p);
        }
    }
    out
}

/// The launcher pod on the VMI's node (the source while a migration runs), else any.
fn pick_launcher<'a>(pods: &[&'a CachedPod], node: Option<&str>) -> Option<&'a CachedPod> {
    let on = |p: &&&CachedPod| p.node_name.as_deref() == node;
    pods.iter().find(on).or(pods.first()).copied()
}

fn non_vm_requests_per_node(pods: &[Arc<CachedPod>]) -> BTreeMap<String, Resources> {
    let mut out: BTreeMap<String, Resources> = BTreeMap::new();
    for p in pods.iter().filter(|p| p.is_live() && launcher_vmi_key(p).is_none()) {
        if let Some(n) = p.node_name.clone() {
            let e = out.entry(n).or_default();
            *e = e.saturating_add(p.total_requests());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// VMs
// ---------------------------------------------------------------------------------------------------------

/// A VMI kubedrs plans for: not being deleted, not finished, and either on a node (`node`: its own, or its
/// bound launcher pod's) or waiting for kubedrs to place it (`schedulerName: kubedrs`). VMIs waiting for the
/// default scheduler are left to it.
fn is_candidate(vmi: &VirtualMachineInstance, node: Option<&str>) -> bool {
    if vmi.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = vmi.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return false;
    }
    node.is_some() || vmi.spec.scheduler_name.as_deref() == Some(keys::SCHEDULER_NAME)
}

/// A VMI's node: its own, else the node its launcher pod is bound to (by kube-scheduler or kubedrs) while
/// virt-controller has not written it yet: the VMI is starting there, and the kubelet already counts its
/// pod's requests on that node, so kubedrs must too.
fn node_of<'a>(vmi: &'a VirtualMachineInstance, launchers: &BTreeMap<String, Vec<&'a CachedPod>>) -> Option<&'a str> {
    vmi.node_name().or_else(|| {
        let pods = launchers.get(&vmi.key())?;
        pods.iter().find_map(|p| p.node())
    })
}

fn pool_label<'a>(vm: Option<&'a VirtualMachine>, vmi: &'a VirtualMachineInstance) -> Option<&'a str> {
    let of = |l: Option<&'a BTreeMap<String, String>>| l.and_then(|l| l.get(keys::POOL)).map(String::as_str);
    vm.and_then(|vm| of(vm.metadata.labels.as_ref())).or_else(|| of(vmi.metadata.labels.as_ref()))
}

/// KubeVirt's default CPU allocation ratio: without a CPU request, a VMI's virt-launcher requests
/// 1/10 of a core per vCPU (`cpuAllocationRatio: 10`). A cluster may configure another ratio; kubedrs
/// sees the real request on the virt-launcher pod whenever the pod exists.
pub const KUBEVIRT_CPU_ALLOCATION_RATIO: u64 = 10;

/// Rough estimate of the memory KubeVirt adds to a virt-launcher pod on top of the guest memory, used only
/// when no virt-launcher pod is seen (a VMI waiting to start): 200 MiB fixed (virt-launcher, libvirt,
/// QEMU), 8 MiB per vCPU and 1/512 of guest memory (page tables). A guess close to KubeVirt's
/// `GetMemoryOverhead` for common VMs, not a copy of it.
pub fn estimated_memory_overhead(guest_bytes: u64, vcpus: u32) -> u64 {
    200 * (1 << 20) + u64::from(vcpus) * 8 * (1 << 20) + guest_bytes / 512
}

fn qty<'a>(map: Option<&'a BTreeMap<String, Quantity>>, key: &str) -> Option<&'a str> {
    map?.get(key).map(Quantity::as_str)
}

/// Builds the engine's VM from its VMI, its VM (labels, annotations) and its virt-launcher pod (requests).
///
/// - vCPUs: sockets x cores x threads; without a topology, the CPU limit or request rounded up; else 1.
/// - Guest memory: `domain.memory.guest`, else the memory request, else the limit.
/// - Reservation: the virt-launcher pod's requests (what the scheduler counts, overhead included); without
///   a pod, the VMI's requests (+ estimated overhead for memory unless `overcommitGuestOverhead`), else
///   KubeVirt's defaults (vCPUs / 10 cores; guest memory + overhead).
/// - Limit: the VMI's limits, else the pod's.
/// - Shares and automation: annotations on the VM, else on the VMI; a bad value -> default + warning.
/// - Labels: the VMI's, overlaid by the VM's.
/// - CPU requirement: `domain.cpu.model` (`host-model`/`host-passthrough` -> the host model of its node).
/// - Live-migratable: the `LiveMigratable` condition; absent on a running VMI -> false.
/// - Demand: the fallback (CPU reservation, guest memory); the caller puts in smoothed metrics.
pub fn vm_from(
    vmi: &VirtualMachineInstance,
    vm: Option<&VirtualMachine>,
    launcher: Option<&CachedPod>,
    node_host_model: Option<&str>,
) -> (Vm, Vec<Warning>) {
    let mut warnings = Vec::new();
    let spec: &VirtualMachineInstanceSpec = &vmi.spec;
    let res = spec.domain.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let mut parse = |what: &str, q: Option<&str>, f: fn(&str) -> Result<u64, String>| {
        q.and_then(|q| match f(q) {
            Ok(v) => Some(v),
            Err(e) => {
                warnings.push(vmi_warning(vmi, "BadQuantity", format!("spec.domain.{what}: {e}; ignored")));
                None
            }
        })
    };
    let req_cpu = parse("resources.requests.cpu", qty(requests, "cpu"), cpu_millis);
    let req_mem = parse("resources.requests.memory", qty(requests, "memory"), memory_bytes);
    let lim_cpu = parse("resources.limits.cpu", qty(limits, "cpu"), cpu_millis);
    let lim_mem = parse("resources.limits.memory", qty(limits, "memory"), memory_bytes);
    let guest = parse(
        "memory.guest",
        spec.domain.memory.as_ref().and_then(|m| m.guest.as_ref()).map(Quantity::as_str),
        memory_bytes,
    );

    let vcpus = match spec.domain.cpu.as_ref() {
        Some(c) if c.cores.is_some() || c.sockets.is_some() || c.threads.is_some() => c.vcpus(),
        _ => lim_cpu.or(req_cpu).map_or(1, |m| m.div_ceil(1000).max(1) as u32),
    };
    let memory_size = guest.or(req_mem).or(lim_mem).unwrap_or(0);
    if memory_size == 0 {
        warnings.push(vmi_warning(
            vmi,
            "NoMemorySize",
            "no guest memory, request or limit: its memory is counted as 0".into(),
        ));
    }
    let overcommit = res.and_then(|r| r.overcommit_guest_overhead).unwrap_or(false);
    let overhead = if overcommit { 0 } else { estimated_memory_overhead(memory_size, vcpus) };

    // The pod's requests when it has them (a pod without a request for a resource falls back, per resource).
    let from_pod = launcher.map(CachedPod::total_requests).unwrap_or_default();
    let cpu_res = Some(from_pod.cpu_millis)
        .filter(|v| *v > 0)
        .unwrap_or_else(|| req_cpu.unwrap_or(u64::from(vcpus) * 1000 / KUBEVIRT_CPU_ALLOCATION_RATIO));
    let mem_res = Some(from_pod.memory_bytes)
        .filter(|v| *v > 0)
        .unwrap_or_else(|| req_mem.unwrap_or(memory_size).saturating_add(overhead));
    let (pod_cpu_lim, pod_mem_lim) = launcher.map_or((None, None), |p| p.limits);

    let annotation = |key: &str| -> Option<&str> {
        vm.and_then(|v| v.metadata.annotations.as_ref()?.get(key))
            .or_else(|| vmi.metadata.annotations.as_ref()?.get(key))
            .map(String::as_str)
    };
    let mut shares = |key: &str| -> Shares {
        match annotation(key).map(str::parse::<Shares>) {
            None => Shares::Normal,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                warnings.push(vmi_warning(vmi, "BadAnnotation", format!("annotation {key}: {e}; using normal")));
                Shares::Normal
            }
        }
    };
    let cpu_shares = shares(keys::CPU_SHARES);
    let memory_shares = shares(keys::MEMORY_SHARES);
    let automation = match annotation(keys::AUTOMATION) {
        None => VmAutomation::Default,
        Some("Disabled") => VmAutomation::Disabled,
        Some("Manual") => VmAutomation::Manual,
        Some(other) => {
            warnings.push(vmi_warning(
                vmi,
                "BadAnnotation",
                format!(
                    "annotation {}: {other:?} is not Disabled or Manual; the pool's automation applies",
                    keys::AUTOMATION
                ),
            ));
            VmAutomation::Default
        }
    };

    let node = vmi.node_name();
    let model = spec.domain.cpu.as_ref().and_then(|c| c.model.as_deref()).unwrap_or("");
    let cpu_requirement = match (model, node_host_model) {
        ("", _) => CpuRequirement::Any,
        ("host-model", Some(h)) => CpuRequirement::HostModel(h.to_string()),
        ("host-passthrough", Some(h)) => CpuRequirement::HostPassthrough(h.to_string()),
        ("host-model" | "host-passthrough", None) => {
            if node.is_some() {
                warnings.push(vmi_warning(
                    vmi,
                    "UnknownHostModel",
                    format!(
                        "CPU model {model} but its node has no {}* label: kubedrs cannot tell where it may go",
                        keys::KUBEVIRT_HOST_MODEL_PREFIX
                    ),
                ));
            }
            CpuRequirement::Any
        }
        (named, _) => CpuRequirement::Model(named.to_string()),
    };
    let live_migratable = vmi.live_migratable().unwrap_or(node.is_none());

    // A limit counts at least the reservation: the VMI's memory limit leaves out the overhead its pod's
    // request adds, and the engine refuses a whole pool with a limit below a reservation.
    let cpu_limit = lim_cpu.or(pod_cpu_lim).map(|l| l.max(cpu_res));
    let memory_limit = lim_mem.or(pod_mem_lim).map(|l| l.max(mem_res));

    let mut labels = labels_of(vmi.metadata.labels.as_ref());
    if let Some(vm) = vm {
        labels.extend(labels_of(vm.metadata.labels.as_ref()));
    }

    let vm_out = Vm {
        name: vmi.key(),
        node: node.map(str::to_string),
        namespace: vmi.metadata.namespace.clone().unwrap_or_default(),
        vcpus,
        memory_size_bytes: memory_size,
        cpu: Allocation { reservation: cpu_res, limit: cpu_limit, shares: cpu_shares },
        memory: Allocation { reservation: mem_res, limit: memory_limit, shares: memory_shares },
        // Without metrics: it uses what it reserved (CPU) and all its memory; the caller overrides.
        demand: Resources::new(cpu_res, if memory_size > 0 { memory_size } else { mem_res }),
        dirty_rate_bytes_per_sec: 0,
        cpu_requirement,
        labels,
        automation,
        live_migratable,
    };
    (vm_out, warnings)
}

fn vmi_warning(vmi: &VirtualMachineInstance, reason: &'static str, message: String) -> Warning {
    Warning {
        kind: "VirtualMachineInstance",
        namespace: vmi.metadata.namespace.clone(),
        name: vmi.metadata.name.clone().unwrap_or_default(),
        reason,
        message,
    }
}

fn labels_of(l: Option<&BTreeMap<String, String>>) -> Labels {
    l.cloned().unwrap_or_default()
}

fn key_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!("{}/{}", m.namespace.as_deref().unwrap_or_default(), m.name.as_deref().unwrap_or_default())
}

/// Seconds since the Unix epoch (0 before it).
pub fn secs(t: &Time) -> u64 {
    u64::try_from(t.0.as_second()).unwrap_or(0)
}

/// The maintenance view of one node: what the user asked and what kubedrs wrote on it before.
pub fn node_view(n: &KubeNode) -> NodeView {
    let ann = n.metadata.annotations.as_ref();
    let get = |k: &str| ann.and_then(|a| a.get(k)).cloned();
    NodeView {
        name: n.metadata.name.clone().unwrap_or_default(),
        annotated: maintenance_asked(n),
        unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        cordoned_by_kubedrs: get(keys::CORDONED_BY_KUBEDRS).is_some_and(|v| v == "true"),
        state: get(keys::MAINTENANCE_STATE),
        state_label: n.metadata.labels.as_ref().and_then(|l| l.get(keys::MAINTENANCE_STATE)).cloned(),
        message: get(keys::MAINTENANCE_MESSAGE),
    }
}

/// The maintenance view of the pool's nodes.
pub fn pool_node_views(cluster: &Cluster, snapshot: &Snapshot) -> Vec<NodeView> {
    let names: BTreeSet<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut v: Vec<NodeView> = cluster
        .nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref().is_some_and(|name| names.contains(name)))
        .map(|n| node_view(n))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Pending pods with `schedulerName: kubedrs` and no node, whose VM is in the snapshot: launcher pods to
/// place, and migration target pods.
pub fn pending_pods(cluster: &Cluster, snapshot: &Snapshot) -> Vec<PendingPod> {
    let vm_node: BTreeMap<&str, Option<&str>> =
        snapshot.vms.iter().map(|v| (v.name.as_str(), v.node.as_deref())).collect();
    let mut out: Vec<PendingPod> = cluster
        .pods
        .iter()
        .filter(|p| is_pending_for_kubedrs(p))
        .filter_map(|p| {
            let vm = launcher_vmi_key(p)?;
            let node = *vm_node.get(vm.as_str())?;
            let job = p.label(keys::MIGRATION_JOB_LABEL);
            let selector = p.node_selector.clone();
            let kind = if job.is_some() || node.is_some() {
                let by_job =
                    job.and_then(|uid| cluster.migrations.iter().find(|m| m.metadata.uid.as_deref() == Some(uid)));
                let target = by_job
                    .and_then(|m| m.target_node().map(str::to_string))
                    .or_else(|| selector.get(keys::HOSTNAME).cloned());
                PodKind::MigrationTarget { target, source: node.map(str::to_string), node_selector: selector }
            } else {
                PodKind::Launch
            };
            Some(PendingPod {
                namespace: p.metadata.namespace.clone().unwrap_or_default(),
                name: p.metadata.name.clone().unwrap_or_default(),
                vm,
                kind,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn is_pending_for_kubedrs(p: &CachedPod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.phase.as_deref().unwrap_or("Pending") == "Pending"
        && p.node().is_none()
        && p.scheduler_name.as_deref() == Some(keys::SCHEDULER_NAME)
}
