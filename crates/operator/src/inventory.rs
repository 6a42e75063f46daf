//! Inventory: the reflectors that hold the cluster in memory, the change triggers, and the demand poller.
//!
//! The input side of **observe**: every pass reads the stores ([`Inventory::cluster`]) and hands them to the
//! pure [`crate::observe::observe`]. One reflector (watch + cache) per kind: Nodes, Namespaces,
//! HostPools (owned by the controller, see `controller.rs`), VirtualMachines and VirtualMachineInstances
//! (without the fields kubedrs does not model:
//! [`VirtualMachineInstance::drop_unmodelled`]), Pods (all of them: pods that are not VMs take
//! node capacity; each read as a [`CachedPod`]: only what observe reads), and
//! VirtualMachineInstanceMigrations.
//!
//! Passes run on each pool's `interval` (always: load changes without any event) and on relevant changes,
//! debounced ([`debounced`]): a node's maintenance annotation, cordon, readiness or labels; a VM's labels or
//! kubedrs annotations; a VMI appearing, leaving, moving or changing phase; a pending pod that kubedrs
//! schedules; a migration changing phase (a finished one frees a concurrency slot); a namespace's pool
//! label. Each reflector keeps a small fingerprint of the fields that matter per object and pokes the
//! trigger only when it changes. Changes a user waits on (maintenance, cordon, readiness, a VM to place)
//! are urgent: their pass comes after `--urgent-debounce` (100 ms) instead of `--debounce` (2 s).
//!
//! Demand: [`poll_demand`] lists `metrics.k8s.io` PodMetrics of virt-launcher pods every 30 s into the
//! shared [`DemandWindow`]. Without metrics-server, observe falls back to reservations (and says so).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::ListParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::readiness::{Readiness, WatchBackoff, WatchSignal};
use crate::tolerant::{Skipped, Stub, Tolerant, tolerate};

use crate::crd::HostPool;
use crate::keys;
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceMigration};
use crate::metrics_api::PodMetrics;
use crate::observe::{Cluster, DemandWindow};
use crate::pod::CachedPod;

/// Read handles on every store a pass needs.
#[derive(Clone)]
pub struct Inventory {
    pub pools: Store<HostPool>,
    pub nodes: Store<Node>,
    pub namespaces: Store<Namespace>,
    pub vms: Store<VirtualMachine>,
    pub vmis: Store<VirtualMachineInstance>,
    pub pods: Store<CachedPod>,
    pub migrations: Store<VirtualMachineInstanceMigration>,
    /// Objects the reflectors could not read and left out of the stores.
    pub skipped: Skipped,
}

impl Inventory {
    /// What observe reads, as the stores hold it now.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            pools: self.pools.state(),
            nodes: self.nodes.state(),
            namespaces: self.namespaces.state(),
            vms: self.vms.state(),
            vmis: self.vmis.state(),
            pods: self.pods.state(),
            migrations: self.migrations.state(),
            skipped: self.skipped.list(),
        }
    }

    /// Waits until every reflector but the HostPools' has listed its objects once (the HostPool stream is
    /// driven by the controller, which starts after this).
    pub async fn wait_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.nodes.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await?;
        self.vms.wait_until_ready().await?;
        self.vmis.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.migrations.wait_until_ready().await?;
        Ok(())
    }
}

/// Pokes that ask for a pass of every pool (coalesced by [`debounced`]): routine ones, and urgent ones for
/// changes a user waits on (a node put into maintenance or cordoned, a VM waiting to be placed).
#[derive(Clone)]
pub struct Trigger {
    routine: mpsc::Sender<()>,
    urgent: mpsc::Sender<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Urgency {
    Routine,
    Urgent,
}

/// The receiving side of a [`Trigger`].
pub struct Pokes {
    routine: mpsc::Receiver<()>,
    urgent: mpsc::Receiver<()>,
}

impl Trigger {
    pub fn new() -> (Trigger, Pokes) {
        let (routine, routine_rx) = mpsc::channel(1);
        let (urgent, urgent_rx) = mpsc::channel(1);
        (Trigger { routine, urgent }, Pokes { routine: routine_rx, urgent: urgent_rx })
    }

    /// Asks for a pass; a poke while one is already queued is dropped (it would ask for the same).
    pub fn poke(&self) {
        let _ = self.routine.try_send(());
    }

    /// Asks for a pass after the short quiet time.
    pub fn poke_urgent(&self) {
        let _ = self.urgent.try_send(());
    }

    fn poke_with(&self, u: Urgency) {
        match u {
            Urgency::Routine => self.poke(),
            Urgency::Urgent => self.poke_urgent(),
        }
    }
}

/// One `()` per burst of pokes: after a routine poke, waits `quiet`; after an urgent one (or if one comes
/// during that wait), only `urgent_quiet`; then drops the pokes that came meanwhile. Under constant churn it
/// yields at most once per `quiet` (per `urgent_quiet` when urgent), never starves.
pub fn debounced(pokes: Pokes, quiet: Duration, urgent_quiet: Duration) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(pokes, move |mut p| async move {
        let urgent = tokio::select! {
            biased;
            Some(()) = p.urgent.recv() => true,
            Some(()) = p.routine.recv() => false,
            else => return None,
        };
        if urgent {
            tokio::time::sleep(urgent_quiet).await;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(quiet) => {}
                Some(()) = p.urgent.recv() => tokio::time::sleep(urgent_quiet).await,
            }
        }
        while p.routine.try_recv().is_ok() || p.urgent.try_recv().is_ok() {}
        Some(((), p))
    })
}

/// The fields of an object whose change asks for a pass: `urgent` ones ask for it soon
/// ([`Trigger::poke_urgent`]), `routine` ones after the usual quiet time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fp {
    urgent: String,
    routine: String,
}

impl Fp {
    fn routine(routine: String) -> Fp {
        Fp { urgent: String::new(), routine }
    }
}

/// An object's [`Fp`]; `None`: the object does not matter.
type Fingerprint<K> = fn(&K) -> Option<Fp>;

fn ann(meta: &kube::api::ObjectMeta, prefix: &str) -> String {
    meta.annotations.iter().flatten().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| format!("{k}={v};")).collect()
}

fn labels(meta: &kube::api::ObjectMeta) -> String {
    meta.labels.iter().flatten().map(|(k, v)| format!("{k}={v};")).collect()
}

/// The maintenance request, cordon and readiness are urgent: a user waits for the evacuation to start. The
/// state and message kubedrs writes beside the request are routine.
fn node_fp(n: &Node) -> Option<Fp> {
    let request = n.annotations().get(keys::MAINTENANCE).map(String::as_str).unwrap_or_default();
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_default();
    let unsched = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref()).map(|a| format!("{a:?}")).unwrap_or_default();
    Some(Fp {
        urgent: format!("{request}|{ready}|{unsched}"),
        routine: format!("{}|{}|{alloc}", labels(&n.metadata), ann(&n.metadata, keys::MAINTENANCE)),
    })
}

fn namespace_fp(n: &Namespace) -> Option<Fp> {
    Some(Fp::routine(n.labels().get(keys::POOL).cloned().unwrap_or_default()))
}

fn vm_fp(v: &VirtualMachine) -> Option<Fp> {
    Some(Fp::routine(format!("{}|{}", labels(&v.metadata), ann(&v.metadata, crate::crd::PREFIX))))
}

fn vmi_fp(v: &VirtualMachineInstance) -> Option<Fp> {
    let phase = v.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    Some(Fp::routine(format!(
        "{}|{}|{phase}|{:?}|{:?}",
        labels(&v.metadata),
        ann(&v.metadata, crate::crd::PREFIX),
        v.node_name(),
        v.live_migratable()
    )))
}

/// Only pending pods kubedrs must bind; one appearing is urgent (its VM waits to start).
fn pod_fp(p: &CachedPod) -> Option<Fp> {
    (p.scheduler_name.as_deref() == Some(keys::SCHEDULER_NAME) && p.node_name.is_none())
        .then(|| Fp { urgent: "pending".into(), routine: String::new() })
}

fn vmim_fp(m: &VirtualMachineInstanceMigration) -> Option<Fp> {
    Some(Fp::routine(m.phase().to_string()))
}

/// The poke an object's new fingerprint asks for, given the one seen before.
fn poke_for(before: Option<&Fp>, now: Option<&Fp>) -> Option<Urgency> {
    match (before, now) {
        (None, None) => None,
        (Some(_), None) => Some(Urgency::Routine),
        (b, Some(n)) if b.map(|b| &b.urgent) != Some(&n.urgent) && !n.urgent.is_empty() => Some(Urgency::Urgent),
        (Some(b), Some(n)) if b == n => None,
        _ => Some(Urgency::Routine),
    }
}

/// Drops what no step reads of any object (managed fields, the last-applied annotation) to keep the caches
/// small; each kind's own trim (`drop_unmodelled`, or `keep`) follows. Pods are read as [`CachedPod`]s,
/// which keep only what observe reads.
fn slim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    if let Some(a) = obj.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The trim of a kind whose objects are kept whole (but for [`slim`]).
fn keep<K>(_: &mut K) {}

/// The watch of one kind, read object by object ([`crate::tolerant`]): unreadable objects are skipped and
/// recorded in `skipped`, the others go on to the store.
/// Every event and error also goes to `/readyz` ([`Readiness`]); a failed watch is retried after
/// [`WatchBackoff`] (at most 2 s: the cache is fresh again seconds after the API server returns).
fn tolerant_watch<K>(
    client: &Client,
    kind: &'static str,
    ctx: &Reflectors,
    trim: fn(&mut K),
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Stub + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<Tolerant<K>> = Api::all(client.clone());
    let readiness = ctx.readiness.clone();
    readiness.register(kind);
    let watch = watcher(api, watcher::Config::default()).backoff(WatchBackoff::default()).inspect(move |ev| match ev {
        Ok(watcher::Event::Init) => readiness.signal(kind, WatchSignal::ListStarted),
        Ok(watcher::Event::InitDone) => readiness.signal(kind, WatchSignal::Listed),
        Ok(_) => readiness.signal(kind, WatchSignal::Event),
        Err(e) => {
            tracing::warn!(%kind, error = %e, "watch error; retrying with backoff");
            readiness.watch_error(kind, e.to_string());
        }
    });
    tolerate(watch, kind, ctx.skipped.clone()).modify(move |o| {
        slim(o);
        trim(o);
    })
}

/// Runs one reflector until the process ends, keeping each object as `trim` leaves it and poking `trigger`
/// on relevant changes.
fn spawn_reflector<K>(
    client: &Client,
    kind: &'static str,
    ctx: &Reflectors,
    fingerprint: Fingerprint<K>,
    trim: fn(&mut K),
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Stub + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let watch = tolerant_watch::<K>(client, kind, ctx, trim);
    let trigger = ctx.trigger.clone();
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, Fp> = BTreeMap::new();
        let mut initial = true;
        let mut events = std::pin::pin!(watch.reflect(writer));
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Init) => {}
                Ok(watcher::Event::InitApply(o)) => {
                    if let Some(fp) = fingerprint(&o) {
                        seen.insert(key(&o), fp);
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if !initial {
                        // A relist after a watch gap: changes may have been missed.
                        trigger.poke();
                    }
                    initial = false;
                }
                Ok(watcher::Event::Apply(o)) => {
                    let k = key(&o);
                    let now = fingerprint(&o);
                    let before = match &now {
                        Some(fp) => seen.insert(k, fp.clone()),
                        None => seen.remove(&k),
                    };
                    if let Some(u) = poke_for(before.as_ref(), now.as_ref()) {
                        tracing::debug!(%kind, object = %key(&o), urgency = ?u, "relevant change");
                        trigger.poke_with(u);
                    }
                }
                Ok(watcher::Event::Delete(o)) => {
                    if seen.remove(&key(&o)).is_some() {
                        trigger.poke();
                    }
                }
                Err(_) => {} // logged and counted by `tolerant_watch`
            }
        }
    });
    reader
}

fn key<K: Resource>(o: &K) -> String {
    format!("{}/{}", o.meta().namespace.as_deref().unwrap_or_default(), o.meta().name.as_deref().unwrap_or_default())
}

/// What of a HostPool asks for its pass: its spec (the generation), labels, annotations and deletion, not
/// its status. The status is what a pass writes: were it to trigger a pass, a pool whose figures move a
/// little on every pass (the imbalance, from usage) would be passed back to back.
fn pool_input(p: &HostPool) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let m = &p.metadata;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (m.generation, &m.labels, &m.annotations, m.deletion_timestamp.as_ref().map(|t| t.0.as_second()), &m.finalizers)
        .hash(&mut h);
    Some(h.finish())
}

/// What every reflector shares.
pub struct Reflectors {
    pub trigger: Trigger,
    pub skipped: Skipped,
    pub readiness: Readiness,
}

/// The HostPools' watch for the controller: the objects it passes on, and the store they fill.
pub type PoolWatch =
    (std::pin::Pin<Box<dyn futures::Stream<Item = Result<HostPool, watcher::Error>> + Send>>, Store<HostPool>);

/// Starts every reflector; the HostPools' one is returned for the controller to drive (it triggers the
/// passes of the pools that change).
pub fn start(client: &Client, ctx: &Reflectors) -> (Inventory, PoolWatch) {
    let (pools, writer) = reflector::store();
    let pool_stream = tolerant_watch::<HostPool>(client, "HostPool", ctx, keep)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(pool_input, PredicateConfig::default());
    let inv = Inventory {
        pools: pools.clone(),
        nodes: spawn_reflector(client, "Node", ctx, node_fp, keep),
        namespaces: spawn_reflector(client, "Namespace", ctx, namespace_fp, keep),
        vms: spawn_reflector(client, "VirtualMachine", ctx, vm_fp, VirtualMachine::drop_unmodelled),
        vmis: spawn_reflector(client, "VirtualMachineInstance", ctx, vmi_fp, VirtualMachineInstance::drop_unmodelled),
        pods: spawn_reflector(client, "Pod", ctx, pod_fp, keep),
        migrations: spawn_reflector(client, "VirtualMachineInstanceMigration", ctx, vmim_fp, keep),
        skipped: ctx.skipped.clone(),
    };
    (inv, (Box::pin(pool_stream), pools))
}

/// Label selector of virt-launcher pods.
pub const LAUNCHER_SELECTOR: &str = "kubevirt.io=virt-launcher";

/// Lists the usage of every virt-launcher pod once.
pub async fn list_launcher_metrics(client: &Client) -> Result<Vec<PodMetrics>, kube::Error> {
    let api: Api<PodMetrics> = Api::all(client.clone());
    Ok(api.list(&ListParams::default().labels(LAUNCHER_SELECTOR)).await?.items)
}

/// Every `every`, lists PodMetrics of virt-launcher pods into `demand` and forgets VMIs that are gone.
/// metrics.k8s.io being absent is logged (once per outage), never fatal.
pub async fn poll_demand(client: Client, inv: Inventory, demand: Arc<Mutex<DemandWindow>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let metrics = match list_launcher_metrics(&client).await {
            Ok(m) => {
                if failing {
                    tracing::info!("metrics.k8s.io is back: demand from usage again");
                }
                failing = false;
                m
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "metrics.k8s.io unavailable: demand falls back to reservations");
                }
                failing = true;
                continue;
            }
        };
        let pods = inv.pods.state();
        let live: BTreeSet<String> = inv.vmis.state().iter().map(|v| v.key()).collect();
        let now = unix_now();
        if let Ok(mut d) = demand.lock() {
            let warnings = d.record_pod_metrics(&pods, &metrics, u64::try_from(now).unwrap_or(0));
            d.retain(&live);
            for w in warnings {
                tracing::debug!(pod = %w.name, namespace = ?w.namespace, message = %w.message, "bad pod metrics");
            }
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fixtures::{launcher, node, vmi};

    #[tokio::test]
    async fn bursts_of_pokes_become_one_pass() {
        let (t, rx) = Trigger::new();
        let mut s = std::pin::pin!(debounced(rx, Duration::from_millis(20), Duration::from_millis(5)));
        for _ in 0..10 {
            t.poke();
            t.poke_urgent();
        }
        assert_eq!(s.next().await, Some(()));
        t.poke();
        assert_eq!(s.next().await, Some(()));
        drop(t);
        assert_eq!(s.next().await, None);
    }

    /// With the clock paused, time only moves when every task waits: the yields' instants are exact.
    #[tokio::test(start_paused = true)]
    async fn an_urgent_poke_cuts_the_quiet_time_short() {
        let (t, rx) = Trigger::new();
        let (quiet, urgent) = (Duration::from_secs(2), Duration::from_millis(100));
        let mut s = std::pin::pin!(debounced(rx, quiet, urgent));
        let start = tokio::time::Instant::now();
        t.poke();
        assert_eq!(s.next().await, Some(()));
        assert_eq!(start.elapsed(), quiet, "a routine poke waits the full quiet time");

        let start = tokio::time::Instant::now();
        t.poke_urgent();
        assert_eq!(s.next().await, Some(()));
        assert_eq!(start.elapsed(), urgent);

        // Urgent during a routine wait: the pass comes `urgent` after the urgent poke.
        let start = tokio::time::Instant::now();
        t.poke();
        let late = tokio::spawn({
            let t = t.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                t.poke_urgent();
            }
        });
        assert_eq!(s.next().await, Some(()));
        assert_eq!(start.elapsed(), Duration::from_millis(600));
        late.await.unwrap();
    }

    #[test]
    fn maintenance_cordon_readiness_and_pending_placements_are_urgent() {
        let fp = |n: &Node| node_fp(n);
        let plain = fp(&node("n1").build());
        let urgent = |before: &Option<Fp>, now: &Option<Fp>| poke_for(before.as_ref(), now.as_ref());
        assert_eq!(urgent(&plain, &fp(&node("n1").maintenance().build())), Some(Urgency::Urgent));
        assert_eq!(urgent(&plain, &fp(&node("n1").cordoned().build())), Some(Urgency::Urgent));
        assert_eq!(urgent(&plain, &fp(&node("n1").not_ready().build())), Some(Urgency::Urgent));
        assert_eq!(urgent(&plain, &fp(&node("n1").label("zone", "b").build())), Some(Urgency::Routine));
        let state = fp(&node("n1").annotation(keys::MAINTENANCE_STATE, "Entering").build());
        assert_eq!(urgent(&plain, &state), Some(Urgency::Routine), "what kubedrs writes itself");
        assert_eq!(urgent(&plain, &plain), None);
        assert_eq!(urgent(&plain, &None), Some(Urgency::Routine), "a node that no longer matters");

        let v = vmi("ns/a").pending().build();
        let mut pending = CachedPod::from(launcher(&v).build());
        pending.scheduler_name = Some("kubedrs".into());
        assert_eq!(urgent(&None, &pod_fp(&pending)), Some(Urgency::Urgent), "a VM waiting for placement");
        assert_eq!(urgent(&pod_fp(&pending), &pod_fp(&pending)), None);
        let running = vmi("ns/a").on("n1").build();
        assert_eq!(urgent(&vmi_fp(&v), &vmi_fp(&running)), Some(Urgency::Routine));
    }

    #[test]
    fn a_pool_s_own_status_does_not_ask_for_its_pass() {
        let p = crate::fixtures::pool("prod").build();
        let mut written = p.clone();
        written.status = Some(crate::crd::HostPoolStatus { imbalance: Some(0.0007), ..Default::default() });
        assert_eq!(pool_input(&p), pool_input(&written));
        let mut edited = p.clone();
        edited.metadata.generation = Some(edited.metadata.generation.unwrap_or(1) + 1);
        assert_ne!(pool_input(&p), pool_input(&edited), "a spec change");
        let mut deleted = p.clone();
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_ne!(pool_input(&p), pool_input(&deleted), "a deletion");
        let mut annotated = p.clone();
        annotated.metadata.annotations = Some([("team".to_string(), "infra".to_string())].into());
        assert_ne!(pool_input(&p), pool_input(&annotated));
    }

    #[test]
    fn fingerprints_see_what_matters() {
        let n = node("n1").build();
        let m = node("n1").maintenance().build();
        assert_ne!(node_fp(&n), node_fp(&m));
        let c = node("n1").cordoned().build();
        assert_ne!(node_fp(&n), node_fp(&c));
        let v = vmi("ns/a").pending().build();
        let mut pending = CachedPod::from(launcher(&v).build());
        assert_eq!(pod_fp(&pending), None, "default scheduler");
        pending.scheduler_name = Some("kubedrs".into());
        assert!(pod_fp(&pending).is_some());
        assert_ne!(vmi_fp(&v), vmi_fp(&vmi("ns/a").on("n1").build()));
    }
}
