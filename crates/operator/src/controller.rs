//! The per-pool reconcile: **observe -> plan -> actuate -> status**, run by kube's `Controller` on every
//! HostPool.
//!
//! A pass over pool P:
//!
//! 1. a follower returns at once (requeue 5 s): only the leader acts, binds pods and writes status;
//! 2. **observe**: the reflector stores and the demand window go through the pure
//!    [`crate::observe::observe`]; its warnings (bad shares annotations...) become Events once per
//!    change; an invalid spec becomes the `Valid=False` condition naming the field and the pool waits for a
//!    change;
//! 3. **plan**: [`kubedrs_engine::plan`] on P's snapshot (a node that kubedrs cordoned for maintenance and
//!    whose maintenance was just lifted counts as cordoned until it is uncordoned in this same pass);
//! 4. **actuate**: the pure [`crate::actuate::decide`] and [`crate::maintenance::decide`]
//!    produce the actions, [`crate::execute`] applies them (Events through the memo);
//! 5. **status**: computed purely, patched when it changed; metrics recorded; the pool's CPU baseline is
//!    published to the admission webhook;
//! 6. requeue after the pool's `interval`, always. Changes in between trigger passes too (debounced, see
//!    `inventory.rs`); those passes execute placements and mandatory moves, balancing waits for the
//!    interval. Errors are logged, counted, and retried with a per-pool exponential backoff (5 s .. 5 min).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::Recorder;
use kube::{Api, Client, ResourceExt};

use crate::actuate::{self, Action, EventKind, EventSpec, PassInput, PendingPod, PodKind, Target};
use crate::crd::HostPool;
use crate::events::EventMemo;
use crate::inventory::{Inventory, unix_now};
use crate::keys;
use crate::kubevirt::VirtualMachineInstanceMigration;
use crate::leader::Leadership;
use crate::maintenance::{self, MaintenancePolicy, NodeView};
use crate::migrations::{BackoffPolicy, Ledger, MigrationRecord};
use crate::observe::{Cluster, DemandWindow, Warning, launcher_vmi_key, observe};
use crate::status::{self, Outcome, Planned};
use crate::telemetry::Metrics;
use crate::webhook::Baselines;
use kubedrs_engine::{CpuBaselinePolicy, NodeState, Snapshot};

/// Label KubeVirt puts on a migration's target pod: the migration's UID.
pub const MIGRATION_JOB_LABEL: &str = "kubevirt.io/migrationJobUID";

/// Errors of a pass, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the engine refused the snapshot: {0}")]
    Plan(#[source] kubedrs_engine::InvalidSnapshot),
    #[error("cannot patch the status: {0}")]
    Status(#[source] kube::Error),
}

impl Error {
    /// The `step` label of `kubedrs_pass_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Plan(_) => "plan",
            Error::Status(_) => "status",
        }
    }
}

/// Settings of the runtime (from `kubedrs run` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub dry_run: bool,
    pub backoff: BackoffPolicy,
    /// Finished migrations kept beyond the 24 h history.
    pub keep_finished: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { dry_run: false, backoff: BackoffPolicy::default(), keep_finished: 20 }
    }
}

/// What passes remember between them (all of it rebuildable: a restart loses only Event dedup and the
/// balancing clock).
#[derive(Debug, Default)]
pub struct Memo {
    pub events: EventMemo,
    /// Per pool, the finished migrations already counted and reported. Absent before the pool's first pass,
    /// which counts nothing that finished before it (those were reported by the previous leader).
    pub reported: BTreeMap<String, BTreeSet<String>>,
    /// Per pool, when balancing last ran (Unix seconds).
    pub last_balance: BTreeMap<String, i64>,
    /// Per pool, failed passes in a row.
    pub failures: BTreeMap<String, u32>,
    /// Per pool, migrations created in the last [`RECENT_SECS`], until the VMIM reflector shows them: a pass
    /// right after another must not create them again nor forget their concurrency slots.
    pub recent: BTreeMap<String, Vec<MigrationRecord>>,
}

/// How long a created migration is remembered locally while the reflector catches up.
pub const RECENT_SECS: i64 = 60;

/// Adds the recently created migrations the reflector does not show yet to the ledger (as Pending), and
/// forgets the ones it shows or that are too old.
pub fn merge_recent(ledger: &mut Ledger, recent: &mut Vec<MigrationRecord>, now: i64) {
    recent.retain(|r| {
        let seen =
            ledger.ours.iter().any(|o| o.vm == r.vm && o.created.is_some_and(|c| c + 5 >= r.created.unwrap_or(0)));
        !seen && now - r.created.unwrap_or(0) < RECENT_SECS
    });
    for r in recent.iter() {
        ledger.migrating.insert(r.vm.clone());
        ledger.ours.push(r.clone());
    }
}

/// The records of the migrations a pass is about to create.
pub fn created_records(pool: &str, actions: &[Action], now: i64) -> Vec<MigrationRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateMigration { namespace, vmi, from, to, reason, .. } => Some(MigrationRecord {
                namespace: namespace.clone(),
                name: String::new(),
                uid: None,
                vm: format!("{namespace}/{vmi}"),
                pool: Some(pool.to_string()),
                reason: Some(*reason),
                source: Some(from.clone()),
                target: Some(to.clone()),
                phase: crate::kubevirt::MigrationPhase::Unset,
                created: Some(now),
                finished: None,
            }),
            _ => None,
        })
        .collect()
}

/// Shared by every pass.
pub struct Context {
    pub client: Client,
    pub inventory: Inventory,
    pub demand: Arc<Mutex<DemandWindow>>,
    pub metrics: Arc<Metrics>,
    pub leader: Leadership,
    pub recorder: Recorder,
    pub baselines: Baselines,
    pub settings: Settings,
    pub memo: Mutex<Memo>,
}

/// Reconciles one pool (see the module docs).
pub async fn reconcile(pool: Arc<HostPool>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    if !ctx.leader.is_leader() {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    let name = pool.name_any();
    let started = Instant::now();
    let now = unix_now();
    let cluster = ctx.inventory.cluster();
    forget_deleted_pools(&ctx, &cluster);

    // Observe.
    let obs = {
        let demand = ctx.demand.lock().map(|d| d.clone()).unwrap_or_default();
        observe(&cluster, &demand, u64::try_from(now).unwrap_or(0))
    };
    let warning_events = obs.warnings.iter().filter_map(warning_event).collect();
    let warning_events = lock(&ctx.memo).events.filter("observe-warnings", warning_events);
    let pools_api: Api<HostPool> = Api::all(ctx.client.clone());
    let Some(po) = obs.pool(&name) else {
        // Deleted between the trigger and now.
        return Ok(Requeue::await_change());
    };
    let config = match &po.config {
        Ok(c) => c.clone(),
        Err(invalid) => {
            let ev = EventSpec::new(
                Target::Pool(name.clone()),
                EventKind::Warning,
                "InvalidSpec",
                "Validate",
                invalid.to_string(),
            )
            .once(format!("invalid/{invalid}"));
            let mut events = warning_events;
            events.push(ev);
            let events = lock(&ctx.memo).events.filter(&name, events);
            execute_events(&ctx, &name, events).await;
            let st =
                status::compute(pool.status.as_ref(), pool.metadata.generation, now_ts(), &Outcome::Invalid(invalid));
            if status::worth_patching(pool.status.as_ref(), &st) {
                status::patch(&pools_api, &name, &st).await.map_err(Error::Status)?;
            }
            tracing::warn!(pool = %name, error = %invalid, "invalid HostPool spec: waiting for a change");
            ctx.baselines.set(&name, None);
            return Ok(Requeue::await_change());
        }
    };
    let Some(mut snapshot) = po.snapshot.clone() else { return Ok(Requeue::requeue(config.interval)) };
    let node_views = pool_node_views(&cluster, &snapshot);
    lift_leaving_maintenance(&mut snapshot, &node_views);

    // Plan.
    let plan = match kubedrs_engine::plan(&snapshot) {
        Ok(p) => p,
        Err(e) => {
            let st = status::compute(
                pool.status.as_ref(),
                pool.metadata.generation,
                now_ts(),
                &Outcome::Failed(format!("the engine refused the snapshot: {e}")),
            );
            if status::worth_patching(pool.status.as_ref(), &st) {
                status::patch(&pools_api, &name, &st).await.map_err(Error::Status)?;
            }
            return Err(Error::Plan(e));
        }
    };

    // Actuate.
    let migrations: Vec<&VirtualMachineInstanceMigration> = cluster.migrations.iter().map(Arc::as_ref).collect();
    let mut ledger = Ledger::new(&name, migrations.iter().copied());
    merge_recent(&mut ledger, lock(&ctx.memo).recent.entry(name.clone()).or_default(), now);
    let pending = pending_pods(&cluster, &snapshot);
    let balance_due = {
        let memo = lock(&ctx.memo);
        memo.last_balance.get(&name).is_none_or(|t| now + 1 >= t + config.interval.as_secs() as i64)
    };
    let decision = actuate::decide(&PassInput {
        pool: &name,
        automation: config.settings.automation,
        paused: config.paused,
        dry_run: ctx.settings.dry_run,
        concurrency: config.settings.concurrency,
        snapshot: &snapshot,
        plan: &plan,
        ledger: &ledger,
        pending_pods: &pending,
        balance_due,
        backoff: ctx.settings.backoff,
        keep_finished: ctx.settings.keep_finished,
        now,
    });
    let mut actions = maintenance::decide(
        &node_views,
        MaintenancePolicy {
            honor_cordon: config.honor_cordon,
            automation: config.settings.automation,
            paused: config.paused,
            dry_run: ctx.settings.dry_run,
        },
        &snapshot,
        &plan,
        &ledger,
    );
    actions.extend(decision.actions.iter().cloned());
    let counts = {
        let mut memo = lock(&ctx.memo);
        if balance_due {
            memo.last_balance.insert(name.clone(), now);
        }
        let first = !memo.reported.contains_key(&name);
        let reported = memo.reported.entry(name.clone()).or_default();
        let (finished_events, counts) = actuate::report_finished(&ledger, reported);
        if first {
            Vec::new()
        } else {
            actions.extend(finished_events);
            counts
        }
    };
    for (reason, result) in &counts {
        ctx.metrics.count_migration(&name, reason, result);
    }
    let pass_secs = started.elapsed().as_secs_f64();
    lock(&ctx.memo).recent.entry(name.clone()).or_default().extend(created_records(&name, &actions, now));
    let actions = filter_events(&ctx, &name, actions, warning_events);
    let report =
        crate::execute::execute(&ctx.client, &ctx.recorder, &ctx.inventory, &ctx.metrics, &name, actions).await;

    // Status, metrics, baseline.
    ctx.metrics.record_plan(&name, &plan, ledger.active().count(), pass_secs);
    let baseline = match snapshot.pool.cpu_baseline {
        CpuBaselinePolicy::Off => None,
        _ => plan.baseline.model.clone(),
    };
    ctx.baselines.set(&name, baseline);
    let totals = ctx.metrics.totals(&name);
    let st = status::compute(
        pool.status.as_ref(),
        pool.metadata.generation,
        now_ts(),
        &Outcome::Planned(Box::new(Planned {
            snapshot: &snapshot,
            plan: &plan,
            decision: &decision,
            ledger: &ledger,
            conflicts: &po.conflicting_nodes,
            totals: &totals,
            paused: config.paused,
            dry_run: ctx.settings.dry_run,
            pass_duration: pass_secs,
        })),
    );
    if status::worth_patching(pool.status.as_ref(), &st) {
        status::patch(&pools_api, &name, &st).await.map_err(Error::Status)?;
    }
    lock(&ctx.memo).failures.remove(&name);
    tracing::info!(
        pool = %name,
        nodes = snapshot.nodes.len(),
        vms = snapshot.vms.len(),
        imbalance = plan.imbalance_before,
        target = plan.target_imbalance,
        moves = plan.moves.len(),
        placements = plan.placements.len(),
        blocked = plan.blocked.len(),
        recommended = decision.recommendations.len(),
        held = decision.held.len(),
        created = report.migrations_created,
        bound = report.pods_bound,
        failures = report.failures,
        balance_due,
        seconds = pass_secs,
        "pass"
    );
    for h in &decision.held {
        tracing::debug!(pool = %name, vm = %h.vm, why = %h.why, "held");
    }
    Ok(Requeue::requeue(config.interval))
}

/// Logs and counts a failed pass, and retries it with a per-pool exponential backoff.
pub fn error_policy(pool: Arc<HostPool>, err: &Error, ctx: Arc<Context>) -> Requeue {
    let name = pool.name_any();
    ctx.metrics.pass_error(&name, err.metric_label());
    let n = {
        let mut memo = lock(&ctx.memo);
        let n = memo.failures.entry(name.clone()).or_default();
        *n = n.saturating_add(1);
        *n
    };
    let delay = Duration::from_secs((5u64 << n.saturating_sub(1).min(6)).min(300));
    tracing::warn!(pool = %name, error = %err, failures = n, retry_in = ?delay, "pass failed");
    Requeue::requeue(delay)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ts() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Drops the memory and metrics of pools that no longer exist.
fn forget_deleted_pools(ctx: &Context, cluster: &Cluster) {
    let live: BTreeSet<String> = cluster.pools.iter().map(|p| p.name_any()).collect();
    let mut memo = lock(&ctx.memo);
    let gone: Vec<String> = memo.reported.keys().filter(|p| !live.contains(*p)).cloned().collect();
    for p in gone {
        memo.reported.remove(&p);
        memo.last_balance.remove(&p);
        memo.failures.remove(&p);
        memo.recent.remove(&p);
        memo.events.forget(&p);
        ctx.metrics.forget_pool(&p);
        ctx.baselines.set(&p, None);
    }
}

/// Applies the memo to the pass's Events (pool scope) and appends the observe warnings.
fn filter_events(ctx: &Context, pool: &str, actions: Vec<Action>, warnings: Vec<EventSpec>) -> Vec<Action> {
    let (events, mut rest): (Vec<Action>, Vec<Action>) =
        actions.into_iter().partition(|a| matches!(a, Action::Event(_)));
    let specs: Vec<EventSpec> = events
        .into_iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    let kept = lock(&ctx.memo).events.filter(pool, specs);
    rest.extend(kept.into_iter().chain(warnings).map(Action::Event));
    rest
}

async fn execute_events(ctx: &Context, pool: &str, events: Vec<EventSpec>) {
    let actions = events.into_iter().map(Action::Event).collect();
    crate::execute::execute(&ctx.client, &ctx.recorder, &ctx.inventory, &ctx.metrics, pool, actions).await;
}

/// An observe warning as an Event on its object (once per change: the key holds the message).
pub fn warning_event(w: &Warning) -> Option<EventSpec> {
    let ns = w.namespace.clone().unwrap_or_default();
    let target = match w.kind {
        "VirtualMachine" => Target::Vm { namespace: ns, name: w.name.clone() },
        "VirtualMachineInstance" => Target::Vmi { namespace: ns, name: w.name.clone() },
        "Pod" => Target::Pod { namespace: ns, name: w.name.clone() },
        "Node" => Target::Node(w.name.clone()),
        "HostPool" => Target::Pool(w.name.clone()),
        other => {
            tracing::warn!(kind = other, name = %w.name, message = %w.message, "observe warning");
            return None;
        }
    };
    let key = format!("warning/{}/{:?}/{}/{}/{}", w.kind, w.namespace, w.name, w.reason, w.message);
    Some(EventSpec::new(target, EventKind::Warning, w.reason, "Observe", w.message.clone()).once(key))
}

/// The maintenance view of the pool's nodes.
pub fn pool_node_views(cluster: &Cluster, snapshot: &Snapshot) -> Vec<NodeView> {
    let names: BTreeSet<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut v: Vec<NodeView> = cluster
        .nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref().is_some_and(|name| names.contains(name)))
        .map(|n| NodeView::from_node(n))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// A node kubedrs cordoned for maintenance whose `kubedrs.io/maintenance` annotation is gone is about to be
/// uncordoned by this pass: plan it as cordoned (not evacuated, even when the pool honours cordons).
pub fn lift_leaving_maintenance(snapshot: &mut Snapshot, views: &[NodeView]) {
    for v in views.iter().filter(|v| v.cordoned_by_kubedrs && !v.annotated) {
        if let Some(n) = snapshot.nodes.iter_mut().find(|n| n.name == v.name)
            && n.state.in_maintenance()
        {
            n.state = NodeState::Cordoned;
        }
    }
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
            let labels = p.metadata.labels.as_ref();
            let job = labels.and_then(|l| l.get(MIGRATION_JOB_LABEL));
            let selector = p.spec.as_ref().and_then(|s| s.node_selector.clone()).unwrap_or_default();
            let kind = if job.is_some() || node.is_some() {
                let by_job = job.and_then(|uid| {
                    cluster.migrations.iter().find(|m| m.metadata.uid.as_deref() == Some(uid.as_str()))
                });
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

fn is_pending_for_kubedrs(p: &Pod) -> bool {
    let Some(spec) = p.spec.as_ref() else { return false };
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    p.metadata.deletion_timestamp.is_none()
        && phase == "Pending"
        && spec.node_name.as_deref().is_none_or(str::is_empty)
        && spec.scheduler_name.as_deref() == Some(keys::SCHEDULER_NAME)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use crate::observe::DemandWindow;

    fn kubedrs_pod(v: &crate::kubevirt::VirtualMachineInstance) -> Pod {
        let mut p = launcher(v).phase("Pending").build();
        p.spec.as_mut().unwrap().scheduler_name = Some("kubedrs".into());
        p
    }

    /// A whole pass without an API server: observe, plan, decide.
    #[test]
    fn a_pending_vm_in_a_pool_is_placed_by_binding_its_launcher_pod() {
        let mut new = vmi("shop/new").pending().cpus(2).memory("2Gi").label(keys::POOL, "prod").build();
        new.spec.scheduler_name = Some("kubedrs".into());
        let cluster = Cluster {
            pools: vec![Arc::new(pool("prod").selects(keys::POOL, "prod").build())],
            nodes: vec![
                Arc::new(node("n1").cpu("16").memory("64Gi").in_pool("prod").build()),
                Arc::new(node("n2").cpu("16").memory("64Gi").in_pool("prod").build()),
            ],
            pods: vec![Arc::new(kubedrs_pod(&new))],
            vmis: vec![Arc::new(new)],
            ..Cluster::default()
        };
        let obs = observe(&cluster, &DemandWindow::default(), 1000);
        let snap = obs.pool("prod").unwrap().snapshot.clone().unwrap();
        let pending = pending_pods(&cluster, &snap);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].kind, PodKind::Launch);
        let plan = kubedrs_engine::plan(&snap).unwrap();
        let d = actuate::decide(&PassInput {
            pool: "prod",
            automation: kubedrs_engine::Automation::FullyAutomated,
            paused: false,
            dry_run: false,
            concurrency: snap.pool.concurrency,
            snapshot: &snap,
            plan: &plan,
            ledger: &Ledger::default(),
            pending_pods: &pending,
            balance_due: true,
            backoff: BackoffPolicy::default(),
            keep_finished: 20,
            now: 1000,
        });
        assert!(
            d.actions.iter().any(|a| matches!(a, Action::Bind { pod, .. } if pod == "virt-launcher-new-abcde")),
            "{:?} / {:?}",
            d.actions,
            plan
        );
    }

    #[test]
    fn a_migration_target_pod_goes_where_its_migration_says() {
        let v = vmi("shop/a").on("n1").cpus(1).memory("1Gi").label(keys::POOL, "prod").build();
        let mut m = migration("shop/a", "prod").from("n1").to("n2").build();
        m.metadata.uid = Some("m-uid".into());
        let mut target = kubedrs_pod(&v);
        target.metadata.name = Some("virt-launcher-a-target".into());
        target.spec.as_mut().unwrap().node_name = None;
        target
            .metadata
            .labels
            .get_or_insert_default()
            .insert(MIGRATION_JOB_LABEL.into(), m.metadata.uid.clone().unwrap_or_default());
        let cluster = Cluster {
            pools: vec![Arc::new(pool("prod").selects(keys::POOL, "prod").build())],
            nodes: vec![
                Arc::new(node("n1").cpu("16").memory("64Gi").in_pool("prod").build()),
                Arc::new(node("n2").cpu("16").memory("64Gi").in_pool("prod").build()),
            ],
            pods: vec![Arc::new(launcher(&v).build()), Arc::new(target)],
            vmis: vec![Arc::new(v)],
            migrations: vec![Arc::new(m)],
            ..Cluster::default()
        };
        let obs = observe(&cluster, &DemandWindow::default(), 1000);
        let snap = obs.pool("prod").unwrap().snapshot.clone().unwrap();
        let pending = pending_pods(&cluster, &snap);
        assert_eq!(pending.len(), 1);
        assert!(
            matches!(&pending[0].kind, PodKind::MigrationTarget { target: Some(t), source: Some(s), .. } if t == "n2" && s == "n1")
        );
    }

    #[test]
    fn a_migration_just_created_holds_its_vm_until_the_reflector_shows_it() {
        let actions = vec![Action::CreateMigration {
            namespace: "shop".into(),
            vmi: "a".into(),
            from: "n1".into(),
            to: "n2".into(),
            reason: kubedrs_engine::Reason::Balance,
            why: String::new(),
        }];
        let mut recent = created_records("prod", &actions, 100);
        let mut ledger = Ledger::default();
        merge_recent(&mut ledger, &mut recent, 101);
        assert!(ledger.migrating.contains("shop/a"));
        assert_eq!(ledger.slots().pool, 1);
        // The reflector shows it: the local record goes.
        let m = migration("shop/a", "prod").from("n1").to("n2").build();
        let mut m = m;
        m.metadata.creation_timestamp = Some(at(100));
        let mut ledger = Ledger::new("prod", [&m]);
        merge_recent(&mut ledger, &mut recent, 102);
        assert!(recent.is_empty());
        assert_eq!(ledger.slots().pool, 1);
        // Never shown (creation refused): forgotten after RECENT_SECS.
        let mut recent = created_records("prod", &actions, 100);
        merge_recent(&mut Ledger::default(), &mut recent, 100 + RECENT_SECS);
        assert!(recent.is_empty());
    }

    #[test]
    fn a_node_leaving_maintenance_is_not_evacuated() {
        let mut snap = Snapshot {
            nodes: vec![kubedrs_engine::Node {
                name: "n1".into(),
                state: NodeState::EnteringMaintenance,
                ..Default::default()
            }],
            ..Snapshot::default()
        };
        let views =
            vec![NodeView { name: "n1".into(), unschedulable: true, cordoned_by_kubedrs: true, ..NodeView::default() }];
        lift_leaving_maintenance(&mut snap, &views);
        assert_eq!(snap.nodes[0].state, NodeState::Cordoned);
    }

    #[test]
    fn warnings_become_events_on_their_object() {
        let w = Warning {
            kind: "VirtualMachine",
            namespace: Some("shop".into()),
            name: "web-1".into(),
            reason: "InvalidAnnotation",
            message: "kubedrs.io/cpu-shares: \"lots\" is not a shares value".into(),
        };
        let e = warning_event(&w).unwrap();
        assert_eq!(e.target, Target::Vm { namespace: "shop".into(), name: "web-1".into() });
        assert_eq!(e.kind, EventKind::Warning);
        assert!(e.once.is_some());
    }
}
