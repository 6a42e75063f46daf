//! The node half of KubeVirt, emulated: what virt-handler and the kubelet do on each KWOK node, against
//! the real virt-controller and virt-api (`e2e/lib/kubevirt.sh`).
//!
//! Level-triggered like the rest: reflectors on VMIs, VMs, pods and nodes; every change (and a short tick)
//! runs one pass that writes the difference between what is and what the node would report:
//!
//! - **kubelet, for virt-launcher pods** (KWOK's `pod-ready` stage leaves them alone): a pod bound to a
//!   KWOK node is admitted like the kubelet does it ([`admit`]: node selector, then the requests of the
//!   pods the node already runs against its allocatable; a pod that does not fit fails with `OutOfcpu`,
//!   `OutOfmemory`, ... and the kubelet's message), then runs (containers running and ready, init
//!   containers completed, a pod IP). A source pod whose VMI migrated away, or a pod of a finished VMI,
//!   completes (`Succeeded`): its virt-launcher exits.
//! - **virt-handler**: a VMI the real virt-controller `Scheduled` on a KWOK node is started: `Running`,
//!   the `LiveMigratable` condition, `migrationMethod`, `migrationTransport`, `selinuxContext: none`, the
//!   machine type. Migrations, in the two roles virt-handler plays: the **target** advertises its address
//!   once virt-controller handed the target pod over (`PreparingTarget` -> `TargetReady`); the **source**
//!   starts the copy (`startTimestamp`: -> `Running`), which takes `guest memory / rate`; then either the
//!   source reports the failure (`failed`, `failureReason`) or the target takes the VMI over (`nodeName`,
//!   the `kubevirt.io/nodeName` label, `evacuationNodeName` cleared, domain ready, `completed`), and
//!   virt-controller moves the VMIM to `Succeeded`/`Failed` and cleans up. An abort asked by
//!   virt-controller (`abortRequested`) is reported as `abortStatus: Succeeded`.
//! - **heartbeat**: `kubevirt.io/heartbeat` and `kubevirt.io/schedulable=true` on every KWOK node, as
//!   virt-handler's heartbeat does (virt-controller's node controller fails the VMIs of a node whose
//!   heartbeat stops).
//!
//! Failure injection stays where a real failure comes from, the node: `e2e.kubedrs.io/fail-migration:
//! "true"` on the VM or VMI (or `--failure-rate`) fails the copy; `e2e.kubedrs.io/live-migratable:
//! "false"` on the VMI makes virt-handler report `LiveMigratable=False`.
//!
//! Everything it knows is in the API objects (the copy's start is `migrationState.startTimestamp`): a
//! restarted emulator carries on.
//!
//! A pass first decides every write (in order: a node's admissions count the pods admitted before them),
//! then sends them [`WRITERS`] at a time, as the many kubelets and virt-handlers of a real cluster would: a
//! pass over thousands of VMIs does not wait on one round trip after another.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::kubevirt::{self as kv, at, dyn_reflector, str_at, typed_reflector, vm_resource, vmi_resource};
use crate::quantity::{cpu_millis, memory_bytes};

/// Knobs of the node emulator (`kubevirt-node --help`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Memory copied per second during a migration, MiB/s.
    pub migration_rate_mib_s: f64,
    /// Minimum time between two steps of a migration (and the shortest copy).
    pub phase_step: Duration,
    /// Probability that a migration fails at the end of its copy.
    pub failure_rate: f64,
    pub seed: u64,
    /// virt-handler's heartbeat period.
    pub heartbeat: Duration,
    /// Re-run a pass at least this often (timed steps).
    pub tick: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            migration_rate_mib_s: 2048.0,
            phase_step: Duration::from_millis(200),
            failure_rate: 0.0,
            seed: 1,
            heartbeat: Duration::from_secs(30),
            tick: Duration::from_millis(250),
        }
    }
}

/// Where virt-handler's migration proxy would listen (only reported, never dialled).
pub const MIGRATION_IP: &str = "127.0.0.1";
/// The machine type QEMU reports for KubeVirt's default `q35` (the nodes carry both labels).
pub const MACHINE_TYPE: &str = "pc-q35-rhel9.6.0";
const FIELD_MANAGER: &str = "kubevirt-node";
/// Writes of one pass in flight at once (one per node and kind would be the real figure: thousands).
const WRITERS: usize = 32;
const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";
const HEARTBEAT: &str = "kubevirt.io/heartbeat";

struct Stores {
    vms: Store<DynamicObject>,
    vmis: Store<DynamicObject>,
    pods: Store<Pod>,
    nodes: Store<Node>,
}

/// Runs the node emulator until SIGINT/SIGTERM. `client` plays the kubelet (it reads every pod and VM and
/// writes pod status, like a node's kubelet); `handler` plays virt-handler (VMI and node writes, with
/// virt-handler's own service account and so KubeVirt's RBAC and virt-api's checks).
pub async fn run(client: Client, handler: Client, cfg: Config) -> anyhow::Result<()> {
    let notify = Arc::new(Notify::new());
    let stores = Stores {
        vms: dyn_reflector(Api::all_with(client.clone(), &vm_resource()), vm_resource(), &notify),
        vmis: dyn_reflector(Api::all_with(handler.clone(), &vmi_resource()), vmi_resource(), &notify),
        pods: typed_reflector(Api::<Pod>::all(client.clone()), watcher::Config::default(), &notify),
        nodes: typed_reflector(Api::<Node>::all(handler.clone()), watcher::Config::default(), &notify),
    };
    stores.vms.wait_until_ready().await.map_err(|e| anyhow::anyhow!("vms: {e}"))?;
    stores.vmis.wait_until_ready().await.map_err(|e| anyhow::anyhow!("vmis: {e}"))?;
    stores.pods.wait_until_ready().await?;
    stores.nodes.wait_until_ready().await?;
    tracing::info!(?cfg, "kubevirt-node ready");
    let mut n = NodeEmulator {
        client,
        handler,
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        cfg,
        stores,
        last_heartbeat: None,
        step_since: HashMap::new(),
        json: JsonCaches::default(),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        n.pass().await;
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(n.cfg.tick) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("kubevirt-node stopped");
    Ok(())
}

/// One write a pass decided, and what to log once it succeeded.
enum Write {
    /// The kubelet's pod status.
    Pod { pod: Value, status: Value, log: String },
    /// virt-handler's VMI status (and labels).
    Vmi { vmi: Value, status: Value, labels: Option<Value>, log: String },
}

struct NodeEmulator {
    client: Client,
    handler: Client,
    cfg: Config,
    rng: ChaCha8Rng,
    stores: Stores,
    last_heartbeat: Option<Instant>,
    /// Per VMI uid and migration step: when this emulator first saw the step due (a minimum pace).
    step_since: HashMap<String, Instant>,
    json: JsonCaches,
}

/// Each object's JSON, made once per resourceVersion: a pass reuses the JSON of the objects that did not
/// change (turning every cached object into JSON on every pass took most of a core at 3,000 VMIs).
#[derive(Default)]
struct JsonCache(HashMap<String, (String, Arc<Value>)>);

#[derive(Default)]
struct JsonCaches {
    pods: JsonCache,
    vmis: JsonCache,
    vms: JsonCache,
}

impl JsonCache {
    /// The JSON of `objs`, in their order; forgets the objects that are gone.
    fn of<K: kube::Resource + serde::Serialize>(&mut self, objs: &[Arc<K>]) -> Vec<Arc<Value>> {
        let mut next = HashMap::with_capacity(objs.len());
        let out = objs
            .iter()
            .map(|o| {
                let m = o.meta();
                let id = m.uid.clone().unwrap_or_else(|| {
                    format!("{}/{}", m.namespace.as_deref().unwrap_or_default(), m.name.as_deref().unwrap_or_default())
                });
                let rv = m.resource_version.clone().unwrap_or_default();
                let v = match self.0.remove(&id) {
                    Some((seen, v)) if seen == rv && !rv.is_empty() => v,
                    _ => Arc::new(to_value(o.as_ref())),
                };
                next.insert(id, (rv, v.clone()));
                v
            })
            .collect();
        self.0 = next;
        out
    }
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

fn seconds_since(ts: &str) -> Option<f64> {
    let t: k8s_openapi::jiff::Timestamp = ts.parse().ok()?;
    let d = k8s_openapi::jiff::Timestamp::now().duration_since(t);
    Some(d.as_secs_f64())
}

/// A pod's requests as the scheduler and kubelet count them: max(sum of containers, each init
/// container) plus the pod overhead, per resource (CPU in millicores, the rest in units).
pub fn pod_requests(pod: &Value) -> BTreeMap<String, i64> {
    let value = |name: &str, q: &str| if name == "cpu" { cpu_millis(q) } else { memory_bytes(q) };
    let sum = |containers: Option<&Value>| {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for c in containers.and_then(Value::as_array).into_iter().flatten() {
            for (k, v) in c["resources"]["requests"].as_object().into_iter().flatten() {
                *m.entry(k.clone()).or_default() += v.as_str().and_then(|q| value(k, q)).unwrap_or(0);
            }
        }
        m
    };
    let mut total = sum(pod["spec"].get("containers"));
    for c in pod["spec"]["initContainers"].as_array().into_iter().flatten() {
        for (k, v) in sum(Some(&json!([c]))) {
            let e = total.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    for (k, v) in pod["spec"]["overhead"].as_object().into_iter().flatten() {
        *total.entry(k.clone()).or_default() += v.as_str().and_then(|q| value(k, q)).unwrap_or(0);
    }
    total
}

/// The kubelet's admission of `pod` on a node with these labels and allocatable, already running pods
/// requesting `used`: `Err((reason, message))` as the kubelet writes them into the failed pod's status.
pub fn admit(
    node_labels: &BTreeMap<String, String>,
    allocatable: &BTreeMap<String, i64>,
    used: &BTreeMap<String, i64>,
    pod: &Value,
) -> Result<(), (String, String)> {
    if let Err(why) = kv::node_matches_selector(node_labels, pod) {
        return Err(("NodeAffinity".into(), format!("Predicate NodeAffinity failed: {why}")));
    }
    for (res, req) in pod_requests(pod) {
        if req == 0 {
            continue;
        }
        let cap = allocatable.get(&res).copied().unwrap_or(0);
        let have = used.get(&res).copied().unwrap_or(0);
        if have + req > cap {
            let short = res.rsplit('/').next().unwrap_or(&res).to_string();
            let reason = format!("OutOf{short}");
            let message = format!(
                "Pod was rejected: Node didn't have enough resource: {res}, requested: {req}, used: {have}, capacity: {cap}"
            );
            return Err((reason, message));
        }
    }
    Ok(())
}

fn allocatable(node: &Node) -> BTreeMap<String, i64> {
    let value = |name: &str, q: &str| if name == "cpu" { cpu_millis(q) } else { memory_bytes(q) };
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, q)| value(&k, &q.0).map(|v| (k, v)))
        .collect()
}

/// A pod IP for a launcher pod (KWOK hands out 10.244.0.0/16 to the pods it runs; these come from
/// 10.245.0.0/16).
fn pod_ip(pod_uid: &str) -> String {
    let h = pod_uid.bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619));
    format!("10.245.{}.{}", (h >> 8) % 256, (h % 254) + 1)
}

/// A stable stand-in for a sha256 digest.
fn digest(s: &str) -> String {
    (0..4u64)
        .map(|i| {
            let h = s.bytes().fold(14695981039346656037u64 ^ i, |h, b| (h ^ u64::from(b)).wrapping_mul(1099511628211));
            format!("{h:016x}")
        })
        .collect()
}

/// The image ID a container runtime reports: the image pinned by digest (virt-controller requires it of
/// containerDisk containers before it renders a migration target: "no reproducible image digest").
fn image_id(image: &Value) -> String {
    let image = image.as_str().unwrap_or_default();
    let repo = image.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(image, |(r, _)| r);
    format!("{repo}@sha256:{}", digest(image))
}

/// The status a running pod gets (what KWOK's pod-ready stage writes for the others).
fn running_status(pod: &Value) -> Value {
    let now = now_rfc3339();
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "imageID": image_id(&c["image"]),
                        "containerID": format!("containerd://{}", digest(&format!("{}/{}", uid(pod), c["name"]))),
                        "ready": true, "restartCount": 0, "started": true,
                        "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let inits: Vec<Value> = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": image_id(&c["image"]),
                        "ready": true, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}}))
        .collect();
    let ip = pod_ip(&uid(pod));
    json!({
        "phase": "Running",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ],
        "containerStatuses": containers,
        "initContainerStatuses": inits,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
    })
}

/// The status of a pod whose containers exited (`Succeeded`) or that the kubelet rejected (`Failed`).
fn finished_status(pod: &Value, phase: &str, reason: Option<(&str, &str)>) -> Value {
    let now = now_rfc3339();
    let exit = if phase == "Succeeded" { 0 } else { 1 };
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"name": c["name"], "image": c["image"], "ready": false, "restartCount": 0, "started": false,
                        "state": {"terminated": {"exitCode": exit, "reason": if exit == 0 { "Completed" } else { "Error" },
                                                 "finishedAt": now}}}))
        .collect();
    let mut s = json!({
        "phase": phase,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
        ],
    });
    if let Some((r, m)) = reason {
        s["reason"] = json!(r);
        s["message"] = json!(m);
        s["conditions"] = json!([]);
    } else {
        s["containerStatuses"] = json!(containers);
    }
    s
}

impl NodeEmulator {
    async fn pass(&mut self) {
        let kwok_nodes: BTreeMap<String, Node> = self
            .stores
            .nodes
            .state()
            .iter()
            .filter(|n| n.annotations().get(KWOK_NODE_ANNOTATION).map(String::as_str) == Some("fake"))
            .map(|n| (n.name_any(), n.as_ref().clone()))
            .collect();
        self.heartbeat(&kwok_nodes).await;
        let pods: Vec<Arc<Value>> = self.json.pods.of(&self.stores.pods.state());
        let vmis: BTreeMap<String, Arc<Value>> =
            self.json.vmis.of(&self.stores.vmis.state()).into_iter().map(|v| (uid(&v), v)).collect();
        let mut writes = Vec::new();
        self.kubelet(&kwok_nodes, &pods, &vmis, &mut writes);
        let vms: BTreeMap<String, Arc<Value>> =
            self.json.vms.of(&self.stores.vms.state()).into_iter().map(|v| (key(&v), v)).collect();
        let live: std::collections::HashSet<String> = vmis.keys().cloned().collect();
        self.step_since.retain(|k, _| live.contains(k.split('/').next().unwrap_or_default()));
        for vmi in vmis.values() {
            let write = if deleting(vmi) {
                shutdown(vmi, &kwok_nodes)
            } else {
                self.handler(vmi, &kwok_nodes, &pods, vms.get(&key(vmi)).map(|v| v.as_ref()))
            };
            writes.extend(write);
        }
        let (client, handler) = (&self.client, &self.handler);
        futures::stream::iter(writes)
            .for_each_concurrent(WRITERS, |w| async move {
                match w {
                    Write::Pod { pod, status, log } => {
                        if pod_status(client, &pod, status).await {
                            tracing::info!(pod = %key(&pod), "{log}");
                        }
                    }
                    Write::Vmi { vmi, status, labels, log } => {
                        if update_vmi(handler, &vmi, status, labels).await {
                            tracing::info!(vmi = %key(&vmi), "{log}");
                        }
                    }
                }
            })
            .await;
    }

    // -----------------------------------------------------------------------------------------------------
    // Heartbeat (virt-handler)
    // -----------------------------------------------------------------------------------------------------

    async fn heartbeat(&mut self, nodes: &BTreeMap<String, Node>) {
        let due = self.last_heartbeat.is_none_or(|t| t.elapsed() >= self.cfg.heartbeat);
        let api: Api<Node> = Api::all(self.handler.clone());
        let now = now_rfc3339();
        let due_nodes = nodes.iter().filter(|(_, n)| {
            let schedulable = n.labels().get(kv::SCHEDULABLE).map(String::as_str) == Some("true");
            due || !schedulable || !n.annotations().contains_key(HEARTBEAT)
        });
        // One virt-handler per node beats in parallel; 16 at once keeps a 1,000-node round short.
        let results: Vec<bool> = futures::stream::iter(due_nodes)
            .map(|(name, _)| {
                let (api, now) = (api.clone(), now.clone());
                async move {
                    let patch =
                        json!({"metadata": {"labels": {kv::SCHEDULABLE: "true"}, "annotations": {HEARTBEAT: now}}});
                    match api.patch(name, &pp(), &Patch::Merge(patch)).await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!(node = %name, error = %e, "heartbeat failed");
                            false
                        }
                    }
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let ok = results.iter().all(|r| *r);
        if due && ok {
            self.last_heartbeat = Some(Instant::now());
        }
    }

    // -----------------------------------------------------------------------------------------------------
    // The kubelet of virt-launcher pods
    // -----------------------------------------------------------------------------------------------------

    fn kubelet(
        &mut self,
        nodes: &BTreeMap<String, Node>,
        pods: &[Arc<Value>],
        vmis: &BTreeMap<String, Arc<Value>>,
        writes: &mut Vec<Write>,
    ) {
        // What each node runs (pods it admitted: not pending, not finished).
        let mut used: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for p in pods {
            let node = str_at(p, &["spec", "nodeName"]).unwrap_or_default();
            if node.is_empty() || matches!(phase(p), "Pending" | "" | "Succeeded" | "Failed") {
                continue;
            }
            let u = used.entry(node.to_string()).or_default();
            for (k, v) in pod_requests(p) {
                *u.entry(k).or_default() += v;
            }
        }
        let mut pending: Vec<&Value> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| kv::labels(p).get(kv::APP_LABEL).map(String::as_str) == Some("virt-launcher"))
            .filter(|p| !deleting(p) && matches!(phase(p), "Pending" | ""))
            .filter(|p| str_at(p, &["spec", "nodeName"]).is_some_and(|n| nodes.contains_key(n)))
            .collect();
        pending.sort_by_key(|p| str_at(p, &["metadata", "creationTimestamp"]).unwrap_or_default().to_string());
        for p in pending {
            let node_name = str_at(p, &["spec", "nodeName"]).unwrap_or_default().to_string();
            let Some(node) = nodes.get(&node_name) else { continue };
            let labels: BTreeMap<String, String> = node.labels().clone().into_iter().collect();
            let u = used.entry(node_name.clone()).or_default();
            match admit(&labels, &allocatable(node), u, p) {
                Ok(()) => {
                    for (k, v) in pod_requests(p) {
                        *u.entry(k).or_default() += v;
                    }
                    let log = format!("pod admitted and running on {node_name}");
                    writes.push(Write::Pod { pod: p.clone(), status: running_status(p), log });
                }
                Err((reason, message)) => {
                    let status = finished_status(p, "Failed", Some((&reason, &message)));
                    let log = format!("pod rejected by {node_name}: {reason}: {message}");
                    writes.push(Write::Pod { pod: p.clone(), status, log });
                }
            }
        }
        // virt-launcher exits: the source of a finished migration, or the pod of a finished VMI.
        for p in pods {
            if kv::labels(p).get(kv::APP_LABEL).map(String::as_str) != Some("virt-launcher")
                || phase(p) != "Running"
                || deleting(p)
            {
                continue;
            }
            let node = str_at(p, &["spec", "nodeName"]).unwrap_or_default();
            if !nodes.contains_key(node) {
                continue;
            }
            let Some(vmi) = kv::labels(p).get(kv::CREATED_BY).and_then(|u| vmis.get(u)) else { continue };
            let name = str_at(p, &["metadata", "name"]).unwrap_or_default();
            let ms = &vmi["status"]["migrationState"];
            let migrated_away = ms["completed"].as_bool() == Some(true)
                && ms["failed"].as_bool() != Some(true)
                && ms["sourcePod"].as_str() == Some(name)
                && str_at(vmi, &["status", "nodeName"]).is_some_and(|n| n != node);
            let vmi_done = matches!(phase(vmi), "Succeeded" | "Failed");
            if migrated_away || vmi_done {
                let status = finished_status(p, "Succeeded", None);
                let log = format!("virt-launcher exited on {node} (migrated away: {migrated_away})");
                writes.push(Write::Pod { pod: p.as_ref().clone(), status, log });
            }
        }
    }

    // -----------------------------------------------------------------------------------------------------
    // virt-handler
    // -----------------------------------------------------------------------------------------------------

    /// virt-handler's write for `vmi`, if any.
    fn handler(
        &mut self,
        vmi: &Value,
        nodes: &BTreeMap<String, Node>,
        pods: &[Arc<Value>],
        vm: Option<&Value>,
    ) -> Option<Write> {
        let node = str_at(vmi, &["status", "nodeName"]).unwrap_or_default().to_string();
        if !nodes.contains_key(&node) {
            return None;
        }
        let id = uid(vmi);
        match phase(vmi) {
            "Scheduled" => {
                let mut st = vmi["status"].clone();
                st["phase"] = json!("Running");
                set_condition(&mut st, live_migratable_condition(vmi));
                st["migrationMethod"] = json!(migration_method(vmi));
                st["migrationTransport"] = json!("Unix");
                st["selinuxContext"] = json!("none");
                st["machine"] = json!({"type": MACHINE_TYPE});
                Some(vmi_write(vmi, st, None, format!("VMI running on {node}")))
            }
            "Running" => {
                let want = live_migratable_condition(vmi);
                let cur = vmi["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "LiveMigratable"))
                    .map(|c| c["status"].clone());
                if cur.as_ref() != Some(&want["status"]) {
                    let mut st = vmi["status"].clone();
                    set_condition(&mut st, want);
                    return Some(vmi_write(vmi, st, None, "LiveMigratable condition updated".into()));
                }
                self.migration(vmi, &id, pods, vm)
            }
            _ => None,
        }
    }

    /// virt-handler's two roles in a migration (see the module docs).
    fn migration(&mut self, vmi: &Value, id: &str, pods: &[Arc<Value>], vm: Option<&Value>) -> Option<Write> {
        let ms = &vmi["status"]["migrationState"];
        let mid = ms["migrationUid"].as_str().filter(|s| !s.is_empty())?;
        if ms["completed"].as_bool() == Some(true) || ms["failed"].as_bool() == Some(true) {
            return None;
        }
        let target_node = ms["targetNode"].as_str().filter(|s| !s.is_empty())?;
        let target_pod = pods.iter().find(|p| {
            kv::labels(p).get(kv::MIGRATION_JOB_UID).map(String::as_str) == Some(mid)
                && str_at(p, &["spec", "nodeName"]) == Some(target_node)
        });
        let step = |s: &str| format!("{id}/{mid}/{s}");
        let mut st = vmi["status"].clone();
        if ms["abortRequested"].as_bool() == Some(true) {
            st["migrationState"]["abortStatus"] = json!("Succeeded");
            st["migrationState"]["failed"] = json!(true);
            st["migrationState"]["endTimestamp"] = json!(now_rfc3339());
            st["migrationState"]["failureReason"] = json!("Live migration aborted");
            return Some(vmi_write(vmi, st, None, "migration aborted".into()));
        }
        // Target: the migration proxy listens; advertise it.
        if ms["targetNodeAddress"].as_str().unwrap_or_default().is_empty() {
            if target_pod.is_none_or(|p| phase(p) != "Running") || !self.step_due(&step("target")) {
                return None;
            }
            st["migrationState"]["targetNodeAddress"] = json!(MIGRATION_IP);
            st["migrationState"]["targetDirectMigrationNodePorts"] =
                json!({"41231": 0, "36975": 49152, "39281": 49153});
            return Some(vmi_write(vmi, st, None, format!("migration target ready on {target_node}")));
        }
        // Source: start the copy.
        let Some(started) = ms["startTimestamp"].as_str() else {
            if !self.step_due(&step("start")) {
                return None;
            }
            st["migrationState"]["startTimestamp"] = json!(now_rfc3339());
            st["migrationState"]["mode"] = json!("PreCopy");
            return Some(vmi_write(vmi, st, None, "migration started".into()));
        };
        let copy = kv::migration_copy_secs(vmi, self.cfg.migration_rate_mib_s).max(self.cfg.phase_step.as_secs_f64());
        if seconds_since(started).unwrap_or(0.0) < copy || !self.step_due(&step("end")) {
            return None;
        }
        let end = now_rfc3339();
        let random_failure = self.cfg.failure_rate > 0.0 && self.rng.random::<f64>() < self.cfg.failure_rate;
        if kv::must_fail(vmi, vm) || random_failure {
            // The source reports libvirt's failure; virt-controller fails the migration and deletes the target.
            st["migrationState"]["failed"] = json!(true);
            st["migrationState"]["endTimestamp"] = json!(end);
            st["migrationState"]["failureReason"] = json!("Live migration failed: (emulated) copy did not converge");
            return Some(vmi_write(vmi, st, None, "migration failed".into()));
        }
        // The target takes the VMI over (ackMigrationCompletion, then finalizeMigration).
        let ms = &mut st["migrationState"];
        ms["targetNodeDomainDetected"] = json!(true);
        ms["targetNodeDomainReadyTimestamp"] = json!(end);
        ms["endTimestamp"] = json!(end);
        ms["completed"] = json!(true);
        st["nodeName"] = json!(target_node);
        if let Some(o) = st.as_object_mut() {
            o.remove("evacuationNodeName");
            o.remove("launcherContainerImageVersion");
        }
        let labels = json!({kv::NODE_NAME_LABEL: target_node});
        let from = str_at(vmi, &["status", "nodeName"]).unwrap_or_default();
        Some(vmi_write(vmi, st, Some(labels), format!("migration completed: {from} -> {target_node}")))
    }

    /// A step of a migration is due once it has waited `phase_step` since first seen due.
    fn step_due(&mut self, step: &str) -> bool {
        let since = *self.step_since.entry(step.to_string()).or_insert_with(Instant::now);
        since.elapsed() >= self.cfg.phase_step
    }
}

fn vmi_write(vmi: &Value, status: Value, labels: Option<Value>, log: String) -> Write {
    Write::Vmi { vmi: vmi.clone(), status, labels, log }
}

/// A deleted VMI's domain is shut down (the guest is gone at once: the scenarios' VMs have no grace
/// period): `Succeeded`, and the launcher pod's containers exit at the next pass.
fn shutdown(vmi: &Value, nodes: &BTreeMap<String, Node>) -> Option<Write> {
    let node = str_at(vmi, &["status", "nodeName"]).unwrap_or_default();
    if !nodes.contains_key(node) || !matches!(phase(vmi), "Running" | "Scheduled") {
        return None;
    }
    let mut st = vmi["status"].clone();
    st["phase"] = json!("Succeeded");
    Some(vmi_write(vmi, st, None, format!("VMI deleted: domain shut down on {node}")))
}

/// Writes the pod's status like the kubelet; whether it was written.
async fn pod_status(client: &Client, pod: &Value, status: Value) -> bool {
    let ns = str_at(pod, &["metadata", "namespace"]).unwrap_or_default();
    let name = str_at(pod, &["metadata", "name"]).unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match api.patch_status(name, &pp(), &Patch::Merge(json!({"status": status}))).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(pod = %key(pod), error = %e, "cannot write pod status");
            false
        }
    }
}

/// Writes the VMI's status (and labels) like virt-handler's `Update`: the whole status, guarded by the
/// resourceVersion it was computed from (a conflict is retried at the next pass).
async fn update_vmi(handler: &Client, vmi: &Value, status: Value, labels: Option<Value>) -> bool {
    let ns = str_at(vmi, &["metadata", "namespace"]).unwrap_or_default();
    let name = str_at(vmi, &["metadata", "name"]).unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(handler.clone(), ns, &vmi_resource());
    let mut obj = vmi.clone();
    obj["status"] = status;
    if let Some(Value::Object(l)) = labels
        && let Some(m) = obj["metadata"]["labels"].as_object_mut()
    {
        m.extend(l);
    }
    let Ok(o) = serde_json::from_value::<DynamicObject>(obj) else { return false };
    match api
        .replace(name, &kube::api::PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &o)
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 409 => false,
        Err(e) => {
            tracing::warn!(vmi = %key(vmi), error = %e, "cannot update VMI");
            false
        }
    }
}

/// virt-handler's `LiveMigratable` condition: true, unless the emulator is asked to say why not.
fn live_migratable_condition(vmi: &Value) -> Value {
    if kv::live_migratable(vmi) {
        json!({"type": "LiveMigratable", "status": "True", "lastProbeTime": null, "lastTransitionTime": null})
    } else {
        json!({"type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable",
               "message": "cannot migrate VMI: PVC rootdisk is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode) (emulated: e2e.kubedrs.io/live-migratable=false)",
               "lastProbeTime": null, "lastTransitionTime": null})
    }
}

/// `BlockMigration` when a disk lives on the node (containerDisk, emptyDisk, ...), as virt-handler decides.
fn migration_method(vmi: &Value) -> &'static str {
    let local = vmi["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| ["containerDisk", "emptyDisk", "ephemeral", "hostDisk"].iter().any(|k| v.get(*k).is_some()));
    if local { "BlockMigration" } else { "LiveMigration" }
}

fn set_condition(status: &mut Value, cond: Value) {
    let mut conds: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    conds.retain(|c| c["type"] != cond["type"]);
    conds.push(cond);
    status["conditions"] = json!(conds);
}

fn pp() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn launcher(cpu: &str, mem: &str) -> Value {
        json!({"spec": {
            "nodeSelector": {"kubevirt.io/schedulable": "true"},
            "containers": [{"name": "compute", "resources": {"requests": {"cpu": cpu, "memory": mem, "devices.kubevirt.io/kvm": "1"}}},
                           {"name": "volumerootdisk", "resources": {"requests": {"cpu": "10m", "memory": "1M"}}}],
            "initContainers": [{"name": "container-disk-binary", "resources": {"requests": {"cpu": "10m", "memory": "1M"}}}],
        }})
    }

    #[test]
    fn requests_are_summed_like_the_scheduler_does() {
        let r = pod_requests(&launcher("1", "2Gi"));
        assert_eq!(r["cpu"], 1010);
        assert_eq!(r["memory"], (2 << 30) + 1_000_000);
        assert_eq!(r["devices.kubevirt.io/kvm"], 1);
    }

    #[test]
    fn the_kubelet_rejects_what_does_not_fit() {
        let labels: BTreeMap<String, String> = [("kubevirt.io/schedulable".to_string(), "true".to_string())].into();
        let alloc: BTreeMap<String, i64> =
            [("cpu".into(), 4000), ("memory".into(), 8 << 30), ("devices.kubevirt.io/kvm".into(), 1000)].into();
        let used: BTreeMap<String, i64> = [("cpu".into(), 3500)].into();
        assert!(admit(&labels, &alloc, &BTreeMap::new(), &launcher("1", "2Gi")).is_ok());
        let (reason, message) = admit(&labels, &alloc, &used, &launcher("1", "2Gi")).unwrap_err();
        assert_eq!(reason, "OutOfcpu");
        assert_eq!(
            message,
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 1010, used: 3500, capacity: 4000"
        );
        let (reason, _) = admit(&labels, &alloc, &BTreeMap::new(), &launcher("1", "9Gi")).unwrap_err();
        assert_eq!(reason, "OutOfmemory");
        let (reason, _) = admit(&BTreeMap::new(), &alloc, &BTreeMap::new(), &launcher("1", "1Gi")).unwrap_err();
        assert_eq!(reason, "NodeAffinity");
    }

    #[test]
    fn container_disks_migrate_by_block_migration() {
        let vmi = json!({"spec": {"volumes": [{"name": "rootdisk", "containerDisk": {"image": "x"}}]}});
        assert_eq!(migration_method(&vmi), "BlockMigration");
        assert_eq!(
            migration_method(&json!({"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {}}]}})),
            "LiveMigration"
        );
    }

    #[test]
    fn pod_ips_are_stable_and_outside_kwoks_range() {
        assert_eq!(pod_ip("abc"), pod_ip("abc"));
        assert!(pod_ip("abc").starts_with("10.245."));
    }
}
