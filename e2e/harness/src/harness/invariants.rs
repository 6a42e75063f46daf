//! The invariants a fault run must keep, checked by the harness from what the API server shows, independent
//! of the operator's code: a background poller lists VMIs, migrations, launcher pods, nodes and the pool
//! every 500 ms and records every violation with its time.
//!
//! - nothing lost: every VM of the run keeps exactly one VMI, with the UID it had at the start (a VMI
//!   recreated after a failure is a lost VM), in phase `Running`;
//! - nothing doubled: never two unfinished migrations of one VMI, never more than two running launcher
//!   pods of one VMI (two outside a migration is the node emulator's lag in ending the source launcher,
//!   recorded apart in [`Record::emulator_lag`]);
//! - no migration created from a stale view: a new kubedrs migration names as its source the node its VMI
//!   has been on for more than [`STALE_GRACE`];
//! - limits: never more unfinished kubedrs migrations than the pool's `concurrency.perPool`, leaving one node
//!   than `perNodeOutbound`, arriving on one node than `perNodeInbound` (0: no limit);
//! - no migration sent to a node that was already NotReady when kubedrs created it;
//! - at the end ([`Invariants::finish`]): no migration left unfinished, the maintenance node
//!   `InMaintenance`.
//!
//! States read from several lists (pods against migrations, a VMI's phase) are not one snapshot; such a
//! violation counts only once it held for [`GRACE`]. Recovery times come from [`Invariants::mark`]: from a
//! mark (the end of a fault) to the next migration first seen and to the next change of the pool's
//! `status.lastPassTime`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use crate::kubevirt::{self as kv, str_at};

use super::*;

/// How long a state read from several lists must hold before it is a violation.
pub const GRACE: Duration = Duration::from_secs(3);
/// How long a node must have been seen NotReady before a migration to it is a violation (the operator's
/// caches lag the API server by a moment).
pub const NOT_READY_GRACE: Duration = Duration::from_secs(5);
/// How long a VMI must have been on a node before a new migration naming another source is acting on a
/// stale view.
pub const STALE_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(500);

/// The pool's concurrency limits (`spec.concurrency`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_pool: usize,
    pub per_node_out: usize,
    /// 0: no inbound limit.
    pub per_node_in: usize,
}

impl Default for Limits {
    /// The CRD's defaults.
    fn default() -> Self {
        Limits { per_pool: 5, per_node_out: 2, per_node_in: 2 }
    }
}

/// A migration as first seen.
#[derive(Debug, Clone)]
pub struct SeenMigration {
    pub first_seen: Instant,
    pub vmi: String,
    pub by_kubedrs: bool,
    pub target: Option<String>,
}

/// What the poller saw.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// `"<seconds since start>s: <what>"`, each distinct violation once.
    pub violations: Vec<String>,
    pub polls: usize,
    /// Polls that failed (API server unreachable): no check ran.
    pub failed_polls: usize,
    pub peak_in_flight: usize,
    pub peak_out: usize,
    pub peak_in: usize,
    /// Polls with at least one kubedrs migration unfinished.
    pub polls_with_in_flight: usize,
    pub migrations: BTreeMap<String, SeenMigration>,
    /// When the pool's `status.lastPassTime` was seen changing.
    pub status_changes: Vec<Instant>,
    /// The node emulator's lag, not the operator's: a source launcher pod still Running (each once).
    pub emulator_lag: Vec<String>,
    marks: Vec<(String, Instant)>,
    seen_violations: BTreeSet<String>,
    pending: BTreeMap<String, Instant>,
    not_ready_since: BTreeMap<String, Instant>,
    /// VMI -> the node it runs on and since when.
    vmi_node: BTreeMap<String, (String, Instant)>,
    last_pass_time: Option<String>,
}

/// The recovery after a mark: to the next migration created and to the next pool status update.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub label: String,
    pub to_migration: Option<Duration>,
    pub to_status: Option<Duration>,
}

/// The background checker of one run (a namespace, its pool, its VMs).
pub struct Invariants {
    record: Arc<Mutex<Record>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
    client: Client,
    ns: String,
    pool: String,
}

struct Watch {
    client: Client,
    ns: String,
    pool: String,
    limits: Limits,
    /// VM name -> VMI UID at the start.
    uids: BTreeMap<String, String>,
    started: Instant,
}

impl Invariants {
    /// Starts checking the VMs of namespace `ns` (all of them must be running now) and the HostPool `pool`.
    pub async fn start(client: &Client, ns: &str, pool: &str, limits: Limits) -> anyhow::Result<Invariants> {
        let vmis: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kv_resource("VirtualMachineInstance"));
        let mut uids = BTreeMap::new();
        for v in vmis.list(&ListParams::default()).await?.items {
            let v = to_json(v);
            if let (Some(n), Some(u)) = (str_at(&v, &["metadata", "name"]), str_at(&v, &["metadata", "uid"])) {
                uids.insert(n.to_string(), u.to_string());
            }
        }
        anyhow::ensure!(!uids.is_empty(), "no VMI in {ns} to watch");
        let started = Instant::now();
        let record = Arc::new(Mutex::new(Record::default()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let w = Watch { client: client.clone(), ns: ns.into(), pool: pool.into(), limits, uids, started };
        let rec = record.clone();
        let task = tokio::spawn(async move {
            loop {
                let result = w.poll(&rec).await;
                if let Ok(mut r) = rec.lock() {
                    r.polls += 1;
                    if result.is_err() {
                        r.failed_polls += 1;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        Ok(Invariants { record, stop, task, started, client: client.clone(), ns: ns.into(), pool: pool.into() })
    }

    /// Marks the end of a fault: [`Invariants::recoveries`] measures from here.
    pub fn mark(&self, label: &str) {
        if let Ok(mut r) = self.record.lock() {
            r.marks.push((label.to_string(), Instant::now()));
        }
    }

    /// Records a violation the scenario found itself (e.g. two replicas acting at once).
    pub fn violation(&self, what: &str) {
        if let Ok(mut r) = self.record.lock() {
            let t = self.started.elapsed().as_secs_f64();
            record(&mut r, t, what);
        }
    }

    /// A copy of what was seen so far.
    pub fn snapshot(&self) -> Record {
        self.record.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Stops the poller and runs the final checks: every migration finished, every VM running once with
    /// its first UID, and `maintenance` (if any) ends `InMaintenance`. Call it after waiting for the run to
    /// settle.
    pub async fn finish(self, maintenance: Option<&str>) -> anyhow::Result<Report> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let mut rec = self.record.lock().map(|r| r.clone()).unwrap_or_default();
        let t = self.started.elapsed().as_secs_f64();
        let vmims: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &kv_resource("VirtualMachineInstanceMigration"));
        let open: Vec<String> = vmims
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(to_json)
            .filter(|m| !finished(m))
            .filter_map(|m| str_at(&m, &["metadata", "name"]).map(str::to_string))
            .collect();
        if !open.is_empty() {
            record(&mut rec, t, &format!("at the end: migrations left unfinished: {open:?}"));
        }
        if let Some(node) = maintenance {
            let n = Api::<Node>::all(self.client.clone()).get(node).await?;
            let state = n.annotations().get(MAINTENANCE_STATE).cloned().unwrap_or_default();
            if state != "InMaintenance" {
                record(&mut rec, t, &format!("at the end: {node} is {state:?}, not InMaintenance"));
            }
        }
        let recoveries = rec
            .marks
            .iter()
            .map(|(label, at)| Recovery {
                label: label.clone(),
                to_migration: rec.migrations.values().map(|m| m.first_seen).filter(|s| s > at).min().map(|s| s - *at),
                to_status: rec.status_changes.iter().find(|s| *s > at).map(|s| *s - *at),
            })
            .collect();
        let _ = &self.pool;
        Ok(Report { record: rec, recoveries })
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub record: Record,
    pub recoveries: Vec<Recovery>,
}

impl Report {
    /// Longest recovery to the pool's next status update, seconds.
    pub fn max_status_recovery(&self) -> Option<f64> {
        self.recoveries.iter().filter_map(|r| r.to_status).map(|d| d.as_secs_f64()).reduce(f64::max)
    }

    /// Prints the record for the test log.
    pub fn print(&self, what: &str) {
        let r = &self.record;
        eprintln!(
            "  invariants [{what}]: {} polls ({} failed), {} migrations seen ({} by kubedrs), peaks {} in flight / {} out / {} in, {} polls with migrations in flight, {} violations",
            r.polls,
            r.failed_polls,
            r.migrations.len(),
            r.migrations.values().filter(|m| m.by_kubedrs).count(),
            r.peak_in_flight,
            r.peak_out,
            r.peak_in,
            r.polls_with_in_flight,
            r.violations.len()
        );
        for v in &r.violations {
            eprintln!("    VIOLATION {v}");
        }
        for l in &r.emulator_lag {
            eprintln!("    emulator lag (not the operator's): {l}");
        }
        for rc in &self.recoveries {
            eprintln!(
                "    recovery after {}: next migration {}, next pool status {}",
                rc.label,
                secs(rc.to_migration),
                secs(rc.to_status)
            );
        }
    }
}

/// `12.3s` or `-`.
pub fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

fn record(r: &mut Record, t: f64, what: &str) {
    if r.seen_violations.insert(what.to_string()) {
        eprintln!("  VIOLATION at {t:.1}s: {what}");
        r.violations.push(format!("{t:.1}s: {what}"));
    }
}

fn finished(m: &Value) -> bool {
    matches!(str_at(m, &["status", "phase"]), Some("Succeeded" | "Failed"))
}

fn kv_resource(kind: &str) -> kube::api::ApiResource {
    let plural = format!("{}s", kind.to_lowercase());
    kube::api::ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("kubevirt.io", "v1", kind), &plural)
}

impl Watch {
    async fn poll(&self, rec: &Mutex<Record>) -> anyhow::Result<()> {
        let lp = ListParams::default();
        let vmis: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &kv_resource("VirtualMachineInstance"));
        let vmims: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &kv_resource("VirtualMachineInstanceMigration"));
        let migs: Vec<Value> = vmims.list(&lp).await?.items.into_iter().map(to_json).collect();
        let vmis: Vec<Value> = vmis.list(&lp).await?.items.into_iter().map(to_json).collect();
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default().labels(&format!("{}=virt-launcher", kv::APP_LABEL)))
            .await?
            .items;
        let nodes = Api::<Node>::all(self.client.clone()).list(&lp).await?.items;
        let pools: Api<DynamicObject> = Api::all_with(self.client.clone(), &hostpool_resource());
        let pool = pools.get_opt(&self.pool).await?.map(to_json);

        let now = Instant::now();
        let t = self.started.elapsed().as_secs_f64();
        let Ok(mut r) = rec.lock() else { return Ok(()) };
        let mut found: Vec<String> = Vec::new();
        let mut pending: Vec<String> = Vec::new();
        let mut lag: Vec<String> = Vec::new();

        // Nodes: since when each is NotReady.
        for n in &nodes {
            let name = n.name_any();
            if node_ready(n) {
                r.not_ready_since.remove(&name);
            } else {
                r.not_ready_since.entry(name).or_insert(now);
            }
        }

        // Where each VMI runs, since when (before the migrations: a new one is checked against it).
        for v in &vmis {
            if let (Some(name), Some(node)) = (str_at(v, &["metadata", "name"]), str_at(v, &["status", "nodeName"])) {
                let e = r.vmi_node.entry(name.to_string()).or_insert_with(|| (node.to_string(), now));
                if e.0 != node {
                    *e = (node.to_string(), now);
                }
            }
        }

        // Migrations.
        let mut open_per_vmi: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let (mut in_flight, mut out, mut inb) =
            (0usize, BTreeMap::<String, usize>::new(), BTreeMap::<String, usize>::new());
        for m in &migs {
            let name = str_at(m, &["metadata", "name"]).unwrap_or_default().to_string();
            let vmi = str_at(m, &["spec", "vmiName"]).unwrap_or_default().to_string();
            let by_kubedrs = m["metadata"]["labels"]["kubedrs.io/reason"].is_string();
            let target = m["metadata"]["annotations"]["kubedrs.io/target-node"]
                .as_str()
                .or_else(|| m["spec"]["addedNodeSelector"][kv::HOSTNAME].as_str())
                .map(str::to_string);
            if !r.migrations.contains_key(&name) {
                if let Some(tn) = &target
                    && let Some(since) = r.not_ready_since.get(tn)
                    && now.duration_since(*since) > NOT_READY_GRACE
                {
                    found.push(format!(
                        "migration {name} of {vmi} sent to {tn}, NotReady for {:.0}s",
                        now.duration_since(*since).as_secs_f64()
                    ));
                }
                r.migrations.insert(
                    name.clone(),
                    SeenMigration { first_seen: now, vmi: vmi.clone(), by_kubedrs, target: target.clone() },
                );
            }
            if finished(m) {
                continue;
            }
            open_per_vmi.entry(vmi.clone()).or_default().push(name.clone());
            if by_kubedrs {
                in_flight += 1;
                let source = m["metadata"]["annotations"]["kubedrs.io/source-node"]
                    .as_str()
                    .or_else(|| str_at(m, &["status", "migrationState", "sourceNode"]))
                    .map(str::to_string);
                if let Some(s) = source {
                    *out.entry(s).or_default() += 1;
                }
                if let Some(tn) = target {
                    *inb.entry(tn).or_default() += 1;
                }
            }
        }
        for (vmi, names) in &open_per_vmi {
            if names.len() > 1 {
                found.push(format!("{} unfinished migrations of VMI {vmi}: {names:?}", names.len()));
            }
        }
        if in_flight > 0 {
            r.polls_with_in_flight += 1;
        }
        r.peak_in_flight = r.peak_in_flight.max(in_flight);
        if in_flight > self.limits.per_pool {
            found.push(format!("{in_flight} kubedrs migrations in flight, pool limit {}", self.limits.per_pool));
        }
        for (n, c) in &out {
            r.peak_out = r.peak_out.max(*c);
            if *c > self.limits.per_node_out {
                found.push(format!("{c} migrations in flight leaving {n}, limit {}", self.limits.per_node_out));
            }
        }
        for (n, c) in &inb {
            r.peak_in = r.peak_in.max(*c);
            if self.limits.per_node_in > 0 && *c > self.limits.per_node_in {
                found.push(format!("{c} migrations in flight arriving on {n}, limit {}", self.limits.per_node_in));
            }
        }

        // VMIs: the same ones, running.
        let by_name: BTreeMap<&str, &Value> =
            vmis.iter().filter_map(|v| Some((str_at(v, &["metadata", "name"])?, v))).collect();
        for (name, uid) in &self.uids {
            match by_name.get(name.as_str()) {
                None => pending.push(format!("VMI {name} is gone")),
                Some(v) => {
                    let u = str_at(v, &["metadata", "uid"]).unwrap_or_default();
                    if u != uid {
                        found.push(format!("VMI {name} was recreated (uid {uid} -> {u}): the VM was lost"));
                    }
                    let phase = str_at(v, &["status", "phase"]).unwrap_or_default();
                    if phase != "Running" {
                        pending.push(format!("VMI {name} is {phase:?}, not Running"));
                    }
                }
            }
        }
        // Launcher pods: one running per VMI, two only while it migrates.
        let uid_to_name: BTreeMap<&str, &str> = vmis
            .iter()
            .filter_map(|v| Some((str_at(v, &["metadata", "uid"])?, str_at(v, &["metadata", "name"])?)))
            .collect();
        let mut running: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &pods {
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
                continue;
            }
            let owner = p.labels().get(kv::CREATED_BY).map(|u| uid_to_name.get(u.as_str()).copied().unwrap_or(u));
            if let Some(vmi) = owner {
                running.entry(vmi.to_string()).or_default().push(p.name_any());
            }
        }
        for (vmi, ps) in &running {
            let migrating = open_per_vmi.contains_key(vmi)
                || by_name.get(vmi.as_str()).is_some_and(|v| {
                    let ms = &v["status"]["migrationState"];
                    ms.is_object() && ms["completed"] != true && ms["failed"] != true
                });
            if ps.len() > 2 {
                pending.push(format!("VMI {vmi} has {} running launcher pods: {ps:?}", ps.len()));
            } else if ps.len() == 2 && !migrating {
                // The node emulator ends the source launcher after the hand-over (virt-handler's job).
                lag.push(format!("VMI {vmi}: 2 running launcher pods outside a migration {ps:?}"));
            }
        }

        // The pool's passes.
        let last = pool.as_ref().and_then(|p| str_at(p, &["status", "lastPassTime"])).map(str::to_string);
        if last.is_some() && last != r.last_pass_time {
            if r.last_pass_time.is_some() {
                r.status_changes.push(now);
            }
            r.last_pass_time = last;
        }

        for f in found {
            record(&mut r, t, &f);
        }
        let mut still: BTreeMap<String, Instant> = BTreeMap::new();
        for p in pending {
            let since = r.pending.get(&p).copied().unwrap_or(now);
            if now.duration_since(since) >= GRACE {
                record(&mut r, t, &p);
            }
            still.insert(p, since);
        }
        for l in lag {
            let since = r.pending.get(&l).copied().unwrap_or(now);
            if now.duration_since(since) >= GRACE && !r.emulator_lag.contains(&l) {
                eprintln!("  emulator lag at {t:.1}s: {l}");
                r.emulator_lag.push(l.clone());
            }
            still.insert(l, since);
        }
        r.pending = still;
        Ok(())
    }
}
