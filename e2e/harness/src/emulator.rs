//! The KubeVirt emulator: plays virt-controller and virt-handler against a real API server.
//!
//! Level-triggered, like KubeVirt's controllers: reflectors keep VirtualMachines, VirtualMachineInstances,
//! VirtualMachineInstanceMigrations, virt-launcher pods and nodes in memory; every change (and a short tick,
//! for the timed steps of a migration) runs one pass that compares what is with what KubeVirt would make of
//! it and writes the difference:
//!
//! - **VMs**: a VM that wants to run gets a VMI (owner reference to the VM); a VM that no longer wants to
//!   run loses it; a VMI that failed is replaced (`runStrategy: Always`); `status.printableStatus`, `ready`,
//!   `created`.
//! - **VMIs**: `Pending` -> a virt-launcher pod ([`crate::kubevirt::launcher_pod`]) -> `Scheduling` -> the pod
//!   is bound (by kube-scheduler, or by kubedrs for `schedulerName: kubedrs`) -> `Scheduled` -> the pod runs
//!   -> `Running` on the pod's node, with `status.nodeName`, `activePods`, `Ready` and `LiveMigratable`
//!   conditions and the `kubevirt.io/nodeName` label. A running VMI whose pod vanished fails. A pod bound to a
//!   node that does not satisfy its node selector is what a kubelet rejects: the VMI fails with
//!   `NodeAffinity`, so a scenario sees it.
//! - **Migrations**: validated when first seen (VMI running, `LiveMigratable`, no other unfinished migration
//!   of the VMI: KubeVirt's admission webhook refuses those, the emulator fails them at once), queued while
//!   KubeVirt's limits are reached (5 per cluster, 2 outbound per node), then `Pending -> Scheduling ->
//!   Scheduled -> PreparingTarget -> TargetReady -> Running -> Succeeded|Failed`, with `migrationState` on
//!   the VMIM and the VMI. The copy takes `guest memory / rate`; it fails when the VM or VMI is annotated
//!   `e2e.kubedrs.io/fail-migration: "true"` or with probability `failure_rate`. On success the VMI moves
//!   to the target, the target pod gets the source pod's usage annotations and the source pod is deleted.
//!   Deleting an unfinished VMIM aborts it (finalizer `kubevirt.io/migrationJobFinalize`).
//!
//! Everything the emulator knows is in the API objects, except timers: a restarted emulator carries on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::kubevirt::{self as kv, at, str_at};

/// Knobs of the emulator (`kubevirt-emulator --help`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Memory copied per second during a migration, MiB/s.
    pub migration_rate_mib_s: f64,
    /// Minimum time between two phases of a migration.
    pub phase_step: Duration,
    /// Probability that a migration fails at the end of its copy.
    pub failure_rate: f64,
    pub seed: u64,
    /// KubeVirt's `parallelMigrationsPerCluster`.
    pub parallel_migrations: usize,
    /// KubeVirt's `parallelOutboundMigrationsPerNode`.
    pub parallel_outbound_per_node: usize,
    /// KubeVirt's `unschedulablePendingTimeoutSeconds`: a target pod not bound within this fails the migration.
    pub unschedulable_timeout: Duration,
    /// Re-run a pass at least this often (timed steps).
    pub tick: Duration,
    /// Serve and register virt-api's `pods/eviction` webhook ([`crate::eviction`]).
    pub eviction_webhook: bool,
    /// Its port on 127.0.0.1 (0: any free port; the registration names the bound one).
    pub webhook_port: u16,
    /// Name of its `ValidatingWebhookConfiguration`.
    pub webhook_config_name: String,
    /// The cluster-wide eviction strategy (`KubeVirt.spec.configuration.evictionStrategy`), for VMIs without
    /// their own.
    pub cluster_eviction_strategy: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            migration_rate_mib_s: 2048.0,
            phase_step: Duration::from_millis(200),
            failure_rate: 0.0,
            seed: 1,
            parallel_migrations: 5,
            parallel_outbound_per_node: 2,
            unschedulable_timeout: Duration::from_secs(300),
            tick: Duration::from_millis(250),
            eviction_webhook: true,
            webhook_port: 0,
            webhook_config_name: crate::eviction::CONFIG_NAME.to_string(),
            cluster_eviction_strategy: None,
        }
    }
}

pub fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubevirt.io", "v1", kind), plural)
}

pub fn vm_resource() -> ApiResource {
    resource("VirtualMachine", "virtualmachines")
}
pub fn vmi_resource() -> ApiResource {
    resource("VirtualMachineInstance", "virtualmachineinstances")
}
pub fn vmim_resource() -> ApiResource {
    resource("VirtualMachineInstanceMigration", "virtualmachineinstancemigrations")
}

const FIELD_MANAGER: &str = "kubevirt-emulator";

/// Migration phases that hold one of KubeVirt's concurrency slots.
const ACTIVE_PHASES: [&str; 5] = ["Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running"];

/// What the emulator remembers between passes (only timers and creation expectations).
#[derive(Default)]
struct Memory {
    /// Pods created and not yet seen in the store, per owner key (VMI uid, or `m/<vmim uid>`).
    expected_pods: HashMap<String, Instant>,
    /// VMIs created and not yet seen, per `ns/name`.
    expected_vmis: HashMap<String, Instant>,
    /// Per VMIM uid: when its current phase began.
    phase_since: HashMap<String, Instant>,
    /// Per VMI uid: since when its active pod is missing.
    pod_missing_since: HashMap<String, Instant>,
    /// Evacuation migrations created and not yet seen, per VMI `ns/name`.
    expected_evacuations: HashMap<String, Instant>,
}

struct Stores {
    vms: Store<DynamicObject>,
    vmis: Store<DynamicObject>,
    vmims: Store<DynamicObject>,
    pods: Store<Pod>,
    nodes: Store<Node>,
}

/// Runs the emulator until SIGINT/SIGTERM.
pub async fn run(client: Client, cfg: Config) -> anyhow::Result<()> {
    let notify = Arc::new(Notify::new());
    let stores = Stores {
        vms: dyn_reflector(Api::all_with(client.clone(), &vm_resource()), vm_resource(), &notify),
        vmis: dyn_reflector(Api::all_with(client.clone(), &vmi_resource()), vmi_resource(), &notify),
        vmims: dyn_reflector(Api::all_with(client.clone(), &vmim_resource()), vmim_resource(), &notify),
        pods: typed_reflector(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels("kubevirt.io=virt-launcher"),
            &notify,
        ),
        nodes: typed_reflector(Api::<Node>::all(client.clone()), watcher::Config::default(), &notify),
    };
    for (what, s) in [("vms", &stores.vms), ("vmis", &stores.vmis), ("vmims", &stores.vmims)] {
        s.wait_until_ready().await.map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    }
    stores.pods.wait_until_ready().await?;
    stores.nodes.wait_until_ready().await?;
    if cfg.eviction_webhook {
        crate::eviction::serve(
            client.clone(),
            cfg.webhook_port,
            &cfg.webhook_config_name,
            cfg.cluster_eviction_strategy.clone(),
        )
        .await?;
    }
    tracing::info!(?cfg, "kubevirt-emulator ready");
    let mut emu = Emulator { client, rng: ChaCha8Rng::seed_from_u64(cfg.seed), cfg, stores, mem: Memory::default() };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(emu.cfg.tick) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
        emu.pass().await;
    }
    if emu.cfg.eviction_webhook {
        crate::eviction::unregister(&emu.client, &emu.cfg.webhook_config_name).await;
    }
    tracing::info!("kubevirt-emulator stopped");
    Ok(())
}

pub fn dyn_reflector(api: Api<DynamicObject>, ar: ApiResource, notify: &Arc<Notify>) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::new(ar);
    let reader = writer.as_reader();
    let notify = notify.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff().reflect(writer));
        while let Some(ev) = s.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::warn!(error = %e, "watch error"),
            }
        }
    });
    reader
}

pub fn typed_reflector<K>(api: Api<K>, cfg: watcher::Config, notify: &Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let notify = notify.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(watcher(api, cfg).default_backoff().reflect(writer));
        while let Some(ev) = s.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::warn!(error = %e, "watch error"),
            }
        }
    });
    reader
}

fn to_value<T: serde::Serialize>(o: &T) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn key(o: &Value) -> String {
    format!(
        "{}/{}",
        str_at(o, &["metadata", "namespace"]).unwrap_or_default(),
        str_at(o, &["metadata", "name"]).unwrap_or_default()
    )
}

fn uid(o: &Value) -> String {
    str_at(o, &["metadata", "uid"]).unwrap_or_default().to_string()
}

fn deleting(o: &Value) -> bool {
    at(o, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null())
}

fn phase(o: &Value) -> &str {
    str_at(o, &["status", "phase"]).unwrap_or("")
}

/// One pass's view of the cluster.
struct View {
    vms: BTreeMap<String, Value>,
    vmis: BTreeMap<String, Value>,
    /// Sorted by creation time, then name.
    vmims: Vec<Value>,
    /// Live launcher pods (not being deleted, not finished) per VMI uid.
    pods: BTreeMap<String, Vec<Value>>,
    node_labels: BTreeMap<String, BTreeMap<String, String>>,
}

struct Emulator {
    client: Client,
    cfg: Config,
    rng: ChaCha8Rng,
    stores: Stores,
    mem: Memory,
}

impl Emulator {
    fn view(&self) -> View {
        let objs = |s: &Store<DynamicObject>| -> BTreeMap<String, Value> {
            s.state().iter().map(|o| to_value(o.as_ref())).map(|v| (key(&v), v)).collect()
        };
        let mut vmims: Vec<Value> = self.stores.vmims.state().iter().map(|o| to_value(o.as_ref())).collect();
        vmims.sort_by(|a, b| {
            let k = |o: &Value| {
                (
                    str_at(o, &["metadata", "creationTimestamp"]).unwrap_or_default().to_string(),
                    str_at(o, &["metadata", "name"]).unwrap_or_default().to_string(),
                )
            };
            k(a).cmp(&k(b))
        });
        let mut pods: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for p in self.stores.pods.state() {
            let v = to_value(p.as_ref());
            let ph = phase(&v);
            if deleting(&v) || ph == "Succeeded" || ph == "Failed" {
                continue;
            }
            if let Some(owner) = kv::labels(&v).get(kv::CREATED_BY) {
                pods.entry(owner.clone()).or_default().push(v);
            }
        }
        let node_labels = self
            .stores
            .nodes
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone().into_iter().collect()))
            .collect();
        View { vms: objs(&self.stores.vms), vmis: objs(&self.stores.vmis), vmims, pods, node_labels }
    }

    async fn pass(&mut self) {
        let view = self.view();
        let now = Instant::now();
        self.mem.expected_pods.retain(|_, t| now.duration_since(*t) < Duration::from_secs(30));
        self.mem
            .expected_vmis
            .retain(|k, t| !view.vmis.contains_key(k) && now.duration_since(*t) < Duration::from_secs(30));
        for vm in view.vms.values() {
            self.vm(vm, &view).await;
        }
        for vmi in view.vmis.values() {
            self.vmi(vmi, &view).await;
        }
        self.migrations(&view).await;
        self.evacuations(&view).await;
    }

    // -----------------------------------------------------------------------------------------------------
    // VirtualMachines
    // -----------------------------------------------------------------------------------------------------

    async fn vm(&mut self, vm: &Value, view: &View) {
        if deleting(vm) {
            return;
        }
        let k = key(vm);
        let ns = str_at(vm, &["metadata", "namespace"]).unwrap_or_default();
        let name = str_at(vm, &["metadata", "name"]).unwrap_or_default();
        let vmi = view.vmis.get(&k);
        let wants = kv::vm_wants_running(vm);
        let vmi_api = Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &vmi_resource());
        match vmi {
            None if wants && !self.mem.expected_vmis.contains_key(&k) => {
                let obj = kv::vmi_from_vm(vm);
                match serde_json::from_value::<DynamicObject>(obj) {
                    Ok(o) => match vmi_api.create(&post(), &o).await {
                        Ok(_) => {
                            tracing::info!(vm = %k, "VMI created");
                            self.mem.expected_vmis.insert(k.clone(), Instant::now());
                        }
                        Err(e) => tracing::warn!(vm = %k, error = %e, "cannot create VMI"),
                    },
                    Err(e) => tracing::warn!(vm = %k, error = %e, "bad VMI"),
                }
            }
            Some(v) if !deleting(v) && owned_by(v, vm) => {
                let finished = matches!(phase(v), "Failed" | "Succeeded");
                if !wants || finished {
                    tracing::info!(vm = %k, phase = phase(v), wants, "VMI deleted");
                    if let Err(e) = vmi_api.delete(name, &DeleteParams::foreground()).await {
                        tracing::warn!(vm = %k, error = %e, "cannot delete VMI");
                    }
                }
            }
            _ => {}
        }
        let (created, ready, printable) = match vmi {
            None => (false, false, if wants { "Starting" } else { "Stopped" }),
            Some(v) => {
                let migrating = at(v, &["status", "migrationState"]).is_some_and(|m| {
                    m.get("startTimestamp").is_some()
                        && m["completed"].as_bool() != Some(true)
                        && m["failed"].as_bool() != Some(true)
                });
                match phase(v) {
                    "Running" if migrating => (true, true, "Migrating"),
                    "Running" => (true, true, "Running"),
                    "Failed" => (true, false, "CrashLoopBackOff"),
                    "Succeeded" => (true, false, "Stopped"),
                    _ => (true, false, "Starting"),
                }
            }
        };
        let desired = json!({"created": created, "ready": ready, "printableStatus": printable});
        let cur = &vm["status"];
        if cur["created"] != desired["created"]
            || cur["ready"] != desired["ready"]
            || cur["printableStatus"] != desired["printableStatus"]
        {
            let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &vm_resource());
            if let Err(e) = api.patch_status(name, &pp(), &Patch::Merge(json!({"status": desired}))).await {
                tracing::debug!(vm = %k, error = %e, "cannot patch VM status");
            }
        }
    }

    // -----------------------------------------------------------------------------------------------------
    // VirtualMachineInstances
    // -----------------------------------------------------------------------------------------------------

    async fn vmi(&mut self, vmi: &Value, view: &View) {
        if deleting(vmi) {
            return;
        }
        let k = key(vmi);
        let id = uid(vmi);
        let ns = str_at(vmi, &["metadata", "namespace"]).unwrap_or_default().to_string();
        let name = str_at(vmi, &["metadata", "name"]).unwrap_or_default().to_string();
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), &ns, &vmi_resource());
        let pods = view.pods.get(&id).map(Vec::as_slice).unwrap_or_default();
        let ph = phase(vmi).to_string();
        if ph == "Failed" || ph == "Succeeded" {
            return;
        }
        if ph.is_empty() || ph == "Pending" || ph == "Scheduling" || ph == "Scheduled" {
            // Start: one launcher pod (not a migration target).
            let launcher = pods.iter().find(|p| !kv::labels(p).contains_key(kv::MIGRATION_JOB_UID));
            let Some(pod) = launcher else {
                if !self.mem.expected_pods.contains_key(&id) {
                    let pod = kv::launcher_pod(vmi, Some(kv::initial_usage(vmi)));
                    match self.create_pod(&ns, pod).await {
                        Ok(n) => {
                            tracing::info!(vmi = %k, pod = %n, "launcher pod created");
                            self.mem.expected_pods.insert(id.clone(), Instant::now());
                        }
                        Err(e) => tracing::warn!(vmi = %k, error = %e, "cannot create launcher pod"),
                    }
                }
                if ph != "Pending" {
                    self.patch_vmi_status(&api, &k, json!({"phase": "Pending"})).await;
                }
                return;
            };
            self.mem.expected_pods.remove(&id);
            let node = str_at(pod, &["spec", "nodeName"]).unwrap_or_default().to_string();
            let running = phase(pod) == "Running";
            if !node.is_empty() && running {
                if let Err(why) = self.admit(pod, &node, view) {
                    self.fail_vmi(&api, &k, "NodeAffinity", &format!("kubelet on {node} rejected the pod: {why}"))
                        .await;
                    return;
                }
                let pod_uid = uid(pod);
                let conditions = json!([
                    {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()},
                    live_migratable_condition(vmi),
                ]);
                self.patch_vmi_status(
                    &api,
                    &k,
                    json!({
                        "phase": "Running",
                        "nodeName": node,
                        "activePods": active_pods_patch(vmi, &pod_uid, &node),
                        "conditions": conditions,
                        "migrationMethod": "LiveMigration",
                        "qosClass": "Burstable",
                        "launcherContainerImageVersion": kv::LAUNCHER_IMAGE,
                    }),
                )
                .await;
                self.label_vmi_node(&api, vmi, &node).await;
                tracing::info!(vmi = %k, %node, "VMI running");
            } else {
                let want = if node.is_empty() { "Scheduling" } else { "Scheduled" };
                if ph != want {
                    self.patch_vmi_status(&api, &k, json!({"phase": want})).await;
                }
            }
            return;
        }
        // Running: the active pod must still exist.
        let active: Vec<String> = at(vmi, &["status", "activePods"])
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let has_active = pods.iter().any(|p| active.contains(&uid(p)));
        if has_active {
            self.mem.pod_missing_since.remove(&id);
        } else {
            let since = *self.mem.pod_missing_since.entry(id.clone()).or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(10) {
                self.mem.pod_missing_since.remove(&id);
                self.fail_vmi(&api, &k, "PodGone", "the virt-launcher pod is gone").await;
                return;
            }
        }
        // The LiveMigratable condition follows the annotation.
        let want = live_migratable_condition(vmi);
        let conds = at(vmi, &["status", "conditions"]).and_then(Value::as_array).cloned().unwrap_or_default();
        let cur = conds.iter().find(|c| c["type"] == "LiveMigratable");
        if cur.map(|c| &c["status"]) != Some(&want["status"]) {
            let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "LiveMigratable").collect();
            conds.push(want);
            self.patch_vmi_status(&api, &k, json!({"conditions": conds})).await;
        }
        let _ = name;
    }

    /// What a kubelet re-checks when a pod lands on it (a Binding bypasses the scheduler).
    fn admit(&self, pod: &Value, node: &str, view: &View) -> Result<(), String> {
        let labels = view.node_labels.get(node).ok_or_else(|| format!("node {node} does not exist"))?;
        kv::node_matches_selector(labels, pod)
    }

    async fn fail_vmi(&self, api: &Api<DynamicObject>, k: &str, reason: &str, message: &str) {
        tracing::warn!(vmi = %k, reason, message, "VMI failed");
        let conds = json!([{"type": "Ready", "status": "False", "reason": reason, "message": message,
                            "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}]);
        self.patch_vmi_status(api, k, json!({"phase": "Failed", "conditions": conds, "reason": reason})).await;
    }

    async fn patch_vmi_status(&self, api: &Api<DynamicObject>, k: &str, status: Value) {
        let name = k.split('/').nth(1).unwrap_or_default();
        if let Err(e) = api.patch_status(name, &pp(), &Patch::Merge(json!({"status": status}))).await {
            tracing::debug!(vmi = %k, error = %e, "cannot patch VMI status");
        }
    }

    async fn label_vmi_node(&self, api: &Api<DynamicObject>, vmi: &Value, node: &str) {
        if kv::labels(vmi).get(kv::NODE_NAME_LABEL).map(String::as_str) == Some(node) {
            return;
        }
        let name = str_at(vmi, &["metadata", "name"]).unwrap_or_default();
        let patch = json!({"metadata": {"labels": {kv::NODE_NAME_LABEL: node}}});
        if let Err(e) = api.patch(name, &pp(), &Patch::Merge(patch)).await {
            tracing::debug!(vmi = %key(vmi), error = %e, "cannot label VMI");
        }
    }

    async fn create_pod(&self, ns: &str, pod: Value) -> anyhow::Result<String> {
        let pod: Pod = serde_json::from_value(pod)?;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        Ok(api.create(&post(), &pod).await?.name_any())
    }

    async fn delete_pod(&self, ns: &str, name: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(%ns, pod = %name, error = %e, "cannot delete pod"),
        }
    }

    // -----------------------------------------------------------------------------------------------------
    // VirtualMachineInstanceMigrations
    // -----------------------------------------------------------------------------------------------------

    async fn migrations(&mut self, view: &View) {
        // KubeVirt's limits: migrations past Pending, in the cluster and per source node.
        let mut active_total = 0usize;
        let mut active_from: BTreeMap<String, usize> = BTreeMap::new();
        for m in &view.vmims {
            if ACTIVE_PHASES.contains(&phase(m)) {
                active_total += 1;
                if let Some(s) = str_at(m, &["status", "migrationState", "sourceNode"]) {
                    *active_from.entry(s.to_string()).or_default() += 1;
                }
            }
        }
        let live_uids: std::collections::HashSet<String> = view.vmims.iter().map(uid).collect();
        self.mem.phase_since.retain(|k, _| live_uids.contains(k));
        for m in &view.vmims {
            self.migration(m, view, &mut active_total, &mut active_from).await;
        }
    }

    #[allow(clippy::too_many_lines)]
    async fn migration(
        &mut self,
        m: &Value,
        view: &View,
        active_total: &mut usize,
        active_from: &mut BTreeMap<String, usize>,
    ) {
        let ns = str_at(m, &["metadata", "namespace"]).unwrap_or_default().to_string();
        let name = str_at(m, &["metadata", "name"]).unwrap_or_default().to_string();
        let mid = uid(m);
        let vmi_name = str_at(m, &["spec", "vmiName"]).unwrap_or_default().to_string();
        let vmi_key = format!("{ns}/{vmi_name}");
        let vmi = view.vmis.get(&vmi_key);
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), &ns, &vmim_resource());
        let vmi_api = Api::<DynamicObject>::namespaced_with(self.client.clone(), &ns, &vmi_resource());
        let ph = phase(m).to_string();
        let finished = ph == "Succeeded" || ph == "Failed";
        let target_pod = vmi.and_then(|v| {
            view.pods.get(&uid(v))?.iter().find(|p| kv::labels(p).get(kv::MIGRATION_JOB_UID) == Some(&mid)).cloned()
        });

        if deleting(m) {
            if !finished {
                // Abort.
                if let Some(p) = &target_pod {
                    self.delete_pod(&ns, str_at(p, &["metadata", "name"]).unwrap_or_default()).await;
                }
                if let Some(v) = vmi
                    && str_at(v, &["status", "migrationState", "migrationUid"]) == Some(mid.as_str())
                {
                    let st = json!({"migrationState": {"failed": true, "abortStatus": "Succeeded",
                                                       "endTimestamp": now_rfc3339()}});
                    self.patch_vmi_status(&vmi_api, &vmi_key, st).await;
                }
                tracing::info!(migration = %format!("{ns}/{name}"), "migration aborted (deleted)");
            }
            let finalizers: Vec<Value> = at(m, &["metadata", "finalizers"])
                .and_then(Value::as_array)
                .map(|f| f.iter().filter(|x| x.as_str() != Some(kv::MIGRATION_FINALIZER)).cloned().collect())
                .unwrap_or_default();
            if finalizers.len() != at(m, &["metadata", "finalizers"]).and_then(Value::as_array).map_or(0, Vec::len) {
                let patch = json!({"metadata": {"finalizers": finalizers}});
                if let Err(e) = api.patch(&name, &pp(), &Patch::Merge(patch)).await {
                    tracing::debug!(migration = %name, error = %e, "cannot remove finalizer");
                }
            }
            return;
        }
        if finished {
            return;
        }
        let since = *self.mem.phase_since.entry(mid.clone()).or_insert_with(Instant::now);
        let step_due = since.elapsed() >= self.cfg.phase_step;

        // The VMI vanished under an unfinished migration.
        let Some(vmi) = vmi.filter(|v| !deleting(v)) else {
            if let Some(p) = &target_pod {
                self.delete_pod(&ns, str_at(p, &["metadata", "name"]).unwrap_or_default()).await;
            }
            self.set_phase(&api, m, "Failed", Some(json!({"failed": true, "failureReason": "the VMI is gone"}))).await;
            return;
        };
        let source_node = str_at(vmi, &["status", "nodeName"]).unwrap_or_default().to_string();

        match ph.as_str() {
            "" => {
                // What KubeVirt's admission webhook and controller check before accepting a migration.
                let mut meta = json!({});
                if !at(m, &["metadata", "finalizers"])
                    .and_then(Value::as_array)
                    .is_some_and(|f| f.iter().any(|x| x == kv::MIGRATION_FINALIZER))
                {
                    let mut f =
                        at(m, &["metadata", "finalizers"]).and_then(Value::as_array).cloned().unwrap_or_default();
                    f.push(json!(kv::MIGRATION_FINALIZER));
                    meta["finalizers"] = json!(f);
                }
                if kv::labels(m).get(kv::VMI_NAME_LABEL) != Some(&vmi_name) {
                    meta["labels"] = json!({kv::VMI_NAME_LABEL: vmi_name});
                }
                if meta.as_object().is_some_and(|o| !o.is_empty())
                    && let Err(e) = api.patch(&name, &pp(), &Patch::Merge(json!({"metadata": meta}))).await
                {
                    tracing::debug!(migration = %name, error = %e, "cannot patch VMIM metadata");
                }
                let refuse = if phase(vmi) != "Running" {
                    Some(format!("VMI {vmi_name} is not running"))
                } else if !kv::live_migratable(vmi) {
                    Some(format!("VMI {vmi_name} is not live migratable"))
                } else {
                    view.vmims
                        .iter()
                        .find(|o| {
                            uid(o) != mid
                                && str_at(o, &["spec", "vmiName"]) == Some(vmi_name.as_str())
                                && str_at(o, &["metadata", "namespace"]) == Some(ns.as_str())
                                && !matches!(phase(o), "Succeeded" | "Failed")
                                && !deleting(o)
                                && (!phase(o).is_empty() || order(o) < order(m))
                        })
                        .map(|other| {
                            format!(
                                "in-flight migration detected. Active migration job ({}) is currently already in \
                                 progress for VMI {vmi_name}",
                                uid(other)
                            )
                        })
                };
                if let Some(why) = refuse {
                    tracing::info!(migration = %format!("{ns}/{name}"), %why, "migration refused");
                    self.set_phase(&api, m, "Failed", Some(json!({"failed": true, "failureReason": why}))).await;
                    return;
                }
                let state = json!({"migrationUid": mid, "sourceNode": source_node,
                                   "sourcePod": self.active_pod_name(vmi, view)});
                self.set_phase(&api, m, "Pending", Some(state)).await;
            }
            "Pending" => {
                if *active_total >= self.cfg.parallel_migrations
                    || active_from.get(&source_node).copied().unwrap_or(0) >= self.cfg.parallel_outbound_per_node
                {
                    return; // queued, as KubeVirt does
                }
                if target_pod.is_none() && !self.mem.expected_pods.contains_key(&format!("m/{mid}")) {
                    let host_model = view.node_labels.get(&source_node).and_then(|l| {
                        l.iter()
                            .find(|(k, v)| k.starts_with(kv::HOST_MODEL_PREFIX) && v.as_str() == "true")
                            .map(|(k, _)| k.trim_start_matches(kv::HOST_MODEL_PREFIX).to_string())
                    });
                    let pod = kv::target_pod(vmi, m, host_model.as_deref());
                    match self.create_pod(&ns, pod).await {
                        Ok(n) => {
                            tracing::info!(migration = %format!("{ns}/{name}"), pod = %n, "target pod created");
                            self.mem.expected_pods.insert(format!("m/{mid}"), Instant::now());
                        }
                        Err(e) => {
                            tracing::warn!(migration = %name, error = %e, "cannot create target pod");
                            return;
                        }
                    }
                }
                *active_total += 1;
                *active_from.entry(source_node.clone()).or_default() += 1;
                self.set_phase(&api, m, "Scheduling", None).await;
            }
            "Scheduling" => {
                let Some(pod) = &target_pod else {
                    if !self.mem.expected_pods.contains_key(&format!("m/{mid}"))
                        && since.elapsed() > Duration::from_secs(10)
                    {
                        self.set_phase(
                            &api,
                            m,
                            "Failed",
                            Some(json!({"failed": true, "failureReason": "target pod vanished"})),
                        )
                        .await;
                    }
                    return;
                };
                self.mem.expected_pods.remove(&format!("m/{mid}"));
                let node = str_at(pod, &["spec", "nodeName"]).unwrap_or_default();
                if !node.is_empty() && step_due {
                    self.set_phase(
                        &api,
                        m,
                        "Scheduled",
                        Some(json!({"targetNode": node,
                        "targetPod": str_at(pod, &["metadata", "name"])})),
                    )
                    .await;
                } else if node.is_empty() && since.elapsed() > self.cfg.unschedulable_timeout {
                    self.delete_pod(&ns, str_at(pod, &["metadata", "name"]).unwrap_or_default()).await;
                    let why = "target pod unschedulable for longer than unschedulablePendingTimeoutSeconds";
                    self.set_phase(&api, m, "Failed", Some(json!({"failed": true, "failureReason": why}))).await;
                }
            }
            "Scheduled" | "PreparingTarget" | "TargetReady" | "Running" => {
                let Some(pod) = &target_pod else {
                    self.fail_migration(&api, &vmi_api, m, vmi, None, "target pod vanished").await;
                    return;
                };
                let target = str_at(pod, &["spec", "nodeName"]).unwrap_or_default().to_string();
                if !step_due {
                    return;
                }
                match ph.as_str() {
                    "Scheduled" => {
                        if phase(pod) != "Running" {
                            return;
                        }
                        if let Err(why) = self.admit(pod, &target, view) {
                            let why = format!("kubelet on {target} rejected the target pod: {why}");
                            self.fail_migration(&api, &vmi_api, m, vmi, Some(pod), &why).await;
                            return;
                        }
                        let state = json!({"migrationUid": mid, "sourceNode": source_node, "targetNode": target,
                            "targetPod": str_at(pod, &["metadata", "name"]),
                            "sourcePod": self.active_pod_name(vmi, view), "mode": "PreCopy",
                            "completed": false, "failed": false});
                        self.patch_vmi_status(&vmi_api, &vmi_key, json!({"migrationState": state})).await;
                        self.set_phase(&api, m, "PreparingTarget", None).await;
                    }
                    "PreparingTarget" => {
                        let st = json!({"migrationState": {"targetNodeAddress": "127.0.0.1", "targetNodeDomainDetected": true}});
                        self.patch_vmi_status(&vmi_api, &vmi_key, st).await;
                        self.set_phase(&api, m, "TargetReady", None).await;
                    }
                    "TargetReady" => {
                        let st = json!({"migrationState": {"startTimestamp": now_rfc3339()}});
                        self.patch_vmi_status(&vmi_api, &vmi_key, st).await;
                        self.set_phase(&api, m, "Running", Some(json!({"startTimestamp": now_rfc3339()}))).await;
                    }
                    _ => {
                        let copy = Duration::from_secs_f64(kv::migration_copy_secs(vmi, self.cfg.migration_rate_mib_s));
                        if since.elapsed() < copy.max(self.cfg.phase_step) {
                            return;
                        }
                        let vm = view.vms.get(&vmi_key);
                        let random_failure =
                            self.cfg.failure_rate > 0.0 && self.rng.random::<f64>() < self.cfg.failure_rate;
                        if kv::must_fail(vmi, vm) || random_failure {
                            self.fail_migration(&api, &vmi_api, m, vmi, Some(pod), "the migration failed (emulated)")
                                .await;
                        } else {
                            self.complete_migration(&api, &vmi_api, m, vmi, pod, view).await;
                        }
                    }
                }
            }
            other => tracing::debug!(migration = %name, phase = other, "unknown phase"),
        }
    }

    // -----------------------------------------------------------------------------------------------------
    // Evacuation (virt-controller's evacuation controller, see crate::eviction)
    // -----------------------------------------------------------------------------------------------------

    async fn evacuations(&mut self, view: &View) {
        let seen: std::collections::HashSet<String> =
            view.vmims.iter().map(crate::eviction::migration_vmi_key).collect();
        self.mem.expected_evacuations.retain(|k, t| !seen.contains(k) && t.elapsed() < Duration::from_secs(30));
        let pending: std::collections::BTreeSet<String> = self.mem.expected_evacuations.keys().cloned().collect();
        let vmis: Vec<&Value> = view.vmis.values().collect();
        let vmims: Vec<&Value> = view.vmims.iter().collect();
        let active_pods = |v: &Value| {
            let active: Vec<String> = at(v, &["status", "activePods"])
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            view.pods.get(&uid(v)).map_or(0, |ps| ps.iter().filter(|p| active.contains(&uid(p))).count())
        };
        let limits = crate::eviction::Limits {
            parallel_migrations: self.cfg.parallel_migrations,
            parallel_outbound_per_node: self.cfg.parallel_outbound_per_node,
        };
        let chosen = crate::eviction::evacuation_candidates(
            &vmis,
            &vmims,
            active_pods,
            &pending,
            self.cfg.cluster_eviction_strategy.as_deref(),
            limits,
        );
        for (vmi_key, node) in chosen {
            let (ns, name) = vmi_key.split_once('/').unwrap_or_default();
            let obj = crate::eviction::evacuation_migration(ns, name, &node);
            let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &vmim_resource());
            match serde_json::from_value::<DynamicObject>(obj) {
                Ok(o) => match api.create(&post(), &o).await {
                    Ok(m) => {
                        tracing::info!(vmi = %vmi_key, %node, migration = %m.name_any(), "evacuation migration created");
                        self.mem.expected_evacuations.insert(vmi_key, Instant::now());
                    }
                    Err(e) => tracing::warn!(vmi = %vmi_key, error = %e, "cannot create evacuation migration"),
                },
                Err(e) => tracing::warn!(vmi = %vmi_key, error = %e, "bad evacuation migration"),
            }
        }
    }

    fn active_pod_name(&self, vmi: &Value, view: &View) -> Option<String> {
        let active: Vec<String> = at(vmi, &["status", "activePods"])
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        view.pods
            .get(&uid(vmi))?
            .iter()
            .find(|p| active.contains(&uid(p)))
            .and_then(|p| str_at(p, &["metadata", "name"]).map(str::to_string))
    }

    async fn complete_migration(
        &mut self,
        api: &Api<DynamicObject>,
        vmi_api: &Api<DynamicObject>,
        m: &Value,
        vmi: &Value,
        target: &Value,
        view: &View,
    ) {
        let ns = str_at(vmi, &["metadata", "namespace"]).unwrap_or_default().to_string();
        let node = str_at(target, &["spec", "nodeName"]).unwrap_or_default().to_string();
        let target_name = str_at(target, &["metadata", "name"]).unwrap_or_default().to_string();
        let source = self.active_pod_name(vmi, view);
        let source_pod = source.as_ref().and_then(|s| {
            view.pods.get(&uid(vmi))?.iter().find(|p| str_at(p, &["metadata", "name"]) == Some(s.as_str()))
        });
        // The guest's usage moves with it.
        let (cpu, mem) = match source_pod {
            Some(p) => {
                let a = kv::annotations(p);
                let i = kv::initial_usage(vmi);
                (
                    a.get(kv::KWOK_USAGE_CPU).cloned().unwrap_or(i.0),
                    a.get(kv::KWOK_USAGE_MEMORY).cloned().unwrap_or(i.1),
                )
            }
            None => kv::initial_usage(vmi),
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({"metadata": {"annotations": {kv::KWOK_USAGE_CPU: cpu, kv::KWOK_USAGE_MEMORY: mem}}});
        if let Err(e) = pods.patch(&target_name, &pp(), &Patch::Merge(patch)).await {
            tracing::warn!(pod = %target_name, error = %e, "cannot carry usage to the target pod");
        }
        let end = now_rfc3339();
        let vmi_key = key(vmi);
        self.patch_vmi_status(
            vmi_api,
            &vmi_key,
            json!({
                "nodeName": node,
                "activePods": active_pods_patch(vmi, &uid(target), &node),
                "migrationState": {"completed": true, "failed": false, "endTimestamp": end},
                // The VMI left the node it was evacuated from (virt-handler's hand-over clears the mark).
                "evacuationNodeName": null,
            }),
        )
        .await;
        self.label_vmi_node(vmi_api, vmi, &node).await;
        self.set_phase(api, m, "Succeeded", Some(json!({"completed": true, "endTimestamp": end, "targetNode": node})))
            .await;
        if let Some(s) = source {
            self.delete_pod(&ns, &s).await;
        }
        tracing::info!(vmi = %vmi_key, from = str_at(vmi, &["status", "nodeName"]).unwrap_or_default(), to = %node,
                       migration = str_at(m, &["metadata", "name"]).unwrap_or_default(), "migration succeeded");
    }

    async fn fail_migration(
        &mut self,
        api: &Api<DynamicObject>,
        vmi_api: &Api<DynamicObject>,
        m: &Value,
        vmi: &Value,
        target: Option<&Value>,
        why: &str,
    ) {
        let ns = str_at(vmi, &["metadata", "namespace"]).unwrap_or_default().to_string();
        if let Some(p) = target {
            self.delete_pod(&ns, str_at(p, &["metadata", "name"]).unwrap_or_default()).await;
        }
        let end = now_rfc3339();
        if str_at(vmi, &["status", "migrationState", "migrationUid"]) == Some(uid(m).as_str()) {
            let st = json!({"migrationState": {"completed": false, "failed": true, "endTimestamp": end,
                                               "failureReason": why}});
            self.patch_vmi_status(vmi_api, &key(vmi), st).await;
        }
        self.set_phase(api, m, "Failed", Some(json!({"failed": true, "endTimestamp": end, "failureReason": why})))
            .await;
        tracing::info!(vmi = %key(vmi), migration = str_at(m, &["metadata", "name"]).unwrap_or_default(), %why,
                       "migration failed");
    }

    /// Moves a VMIM to `phase`, appending to `phaseTransitionTimestamps` and merging `state` into
    /// `status.migrationState`.
    async fn set_phase(&mut self, api: &Api<DynamicObject>, m: &Value, phase: &str, state: Option<Value>) {
        let name = str_at(m, &["metadata", "name"]).unwrap_or_default();
        let mut transitions =
            at(m, &["status", "phaseTransitionTimestamps"]).and_then(Value::as_array).cloned().unwrap_or_default();
        transitions.push(json!({"phase": phase, "phaseTransitionTimestamp": now_rfc3339()}));
        let mut status = json!({"phase": phase, "phaseTransitionTimestamps": transitions});
        if let Some(s) = state {
            let mut merged = at(m, &["status", "migrationState"]).cloned().unwrap_or_else(|| json!({}));
            if let (Some(dst), Some(src)) = (merged.as_object_mut(), s.as_object()) {
                for (k, v) in src {
                    dst.insert(k.clone(), v.clone());
                }
            }
            status["migrationState"] = merged;
        }
        match api.patch_status(name, &pp(), &Patch::Merge(json!({"status": status}))).await {
            Ok(_) => {
                self.mem.phase_since.insert(uid(m), Instant::now());
                tracing::debug!(migration = %name, %phase, "migration phase");
            }
            Err(e) => tracing::warn!(migration = %name, %phase, error = %e, "cannot patch VMIM status"),
        }
    }
}

fn live_migratable_condition(vmi: &Value) -> Value {
    if kv::live_migratable(vmi) {
        json!({"type": "LiveMigratable", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()})
    } else {
        json!({"type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable",
               "message": "cannot migrate VMI (emulated: e2e.kubedrs.io/live-migratable=false)",
               "lastProbeTime": null, "lastTransitionTime": now_rfc3339()})
    }
}

/// A merge patch of `status.activePods` that leaves only `pod` (a merge patch merges maps: the others are
/// set to null).
fn active_pods_patch(vmi: &Value, pod: &str, node: &str) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(cur) = at(vmi, &["status", "activePods"]).and_then(Value::as_object) {
        for k in cur.keys() {
            m.insert(k.clone(), Value::Null);
        }
    }
    m.insert(pod.to_string(), json!(node));
    Value::Object(m)
}

/// Creation order of migrations: creation time (seconds), then name.
fn order(o: &Value) -> (String, String) {
    (
        str_at(o, &["metadata", "creationTimestamp"]).unwrap_or_default().to_string(),
        str_at(o, &["metadata", "name"]).unwrap_or_default().to_string(),
    )
}

fn owned_by(vmi: &Value, vm: &Value) -> bool {
    let vm_uid = uid(vm);
    at(vmi, &["metadata", "ownerReferences"])
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(vm_uid.as_str())))
}

fn pp() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() }
}

fn post() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() }
}
