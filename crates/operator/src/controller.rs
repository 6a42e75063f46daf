//! The per-pool reconcile, run by kube's `Controller` on every HostPool: **fetch -> pass -> execute ->
//! patch status -> keep the memo**.
//!
//! 1. a pool this replica does not hold returns at once (requeue 5 s): only the holder of its Lease acts,
//!    binds pods and writes status, all through the pool's fenced client ([`crate::leader`]); so does a
//!    pass while the caches are stale (`/readyz` false; requeue 2 s);
//! 2. fetch: the reflector stores ([`crate::inventory`]), the demand window, the pool's memo;
//! 3. [`crate::pass::pass`], a pure function, decides everything: actions, Events, status, memo;
//! 4. [`crate::execute::execute`] applies the actions; metrics are recorded; the pool's CPU baseline is
//!    published to the admission webhook;
//! 5. the status is patched when the pass says it is worth it; the memo is kept for the next pass;
//! 6. requeue after the pool's `interval`, always. Changes in between trigger passes too (debounced, see
//!    `inventory.rs`); those passes execute placements and mandatory moves, balancing waits for the
//!    interval. Errors are logged, counted, and retried with a per-pool exponential backoff (5 s .. 5 min).
//!
//! Around it, kube's finalizer helper keeps `kubedrs.io/cleanup` on every pool and, when a pool is deleted,
//! runs [`cleanup`] instead of a pass ([`crate::cleanup`]: release the nodes, then let the object go).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::{Api, Client, ResourceExt};

use crate::actuate::Action;
use crate::crd::HostPool;
use crate::events::EventMemo;
use crate::execute::{Report as ExecReport, execute};
use crate::inventory::Inventory;
use crate::leader::{Shards, Slot};
use crate::observe::{Cluster, DemandWindow};
use crate::pass::{PassInput, PassSummary, PoolMemo, Requeue as PassRequeue, Settings, pass};
use crate::status;
use crate::telemetry::Metrics;
use crate::webhook::Baselines;

/// Errors of a pass, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the engine refused the snapshot: {0}")]
    Plan(#[source] kubedrs_engine::InvalidSnapshot),
    #[error("cannot patch the status: {0}")]
    Status(#[source] kube::Error),
    #[error("cannot release {0} node(s) of the deleted pool; retrying")]
    Cleanup(usize),
    #[error("finalizer kubedrs.io/cleanup: {0}")]
    Finalizer(String),
}

impl Error {
    /// The `step` label of `kubedrs_pass_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Plan(_) => "plan",
            Error::Status(_) => "status",
            Error::Cleanup(_) => "cleanup",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// What passes remember between them, per pool (see [`PoolMemo`]), and the observe warnings already said.
#[derive(Debug, Default)]
pub struct Memo {
    pub pools: BTreeMap<String, PoolMemo>,
    /// The tenure of the pool's Lease each memo was made in: a pool taken back from another replica starts
    /// afresh (what it remembered is stale, and it must not report migrations the other replica reported).
    pub terms: BTreeMap<String, u64>,
    pub warnings: EventMemo,
}

/// Shared by every pass.
pub struct Context {
    pub client: Client,
    pub inventory: Inventory,
    pub demand: Arc<Mutex<DemandWindow>>,
    pub metrics: Arc<Metrics>,
    /// The pools this replica acts on, each with its fenced client and Event recorder.
    pub shards: Shards,
    pub baselines: Baselines,
    pub settings: Settings,
    pub memo: Mutex<Memo>,
    pub readiness: crate::readiness::Readiness,
}

/// Reconciles one pool: a pass while it lives, [`cleanup`] once it is deleted (see the module docs).
pub async fn reconcile(pool: Arc<HostPool>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let name = pool.name_any();
    let Some(slot) = ctx.shards.acting(&name) else {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    };
    // Decisions on a stale cache would repeat writes it does not show yet, or miss changes.
    if let Err(why) = ctx.readiness.check() {
        tracing::debug!(pool = %name, why = %why.join("; "), "caches stale: pass put off");
        ctx.metrics.pass_put_off(&name, "caches-stale");
        return Ok(Requeue::requeue(Duration::from_secs(2)));
    }
    // The finalizer is written through the pool's fenced client, like everything else.
    let api: Api<HostPool> = Api::all(slot.client.clone());
    finalizer(&api, crate::cleanup::FINALIZER, pool, |event| async {
        match event {
            FinalizerEvent::Apply(pool) => reconcile_live(pool, &ctx, &slot).await,
            FinalizerEvent::Cleanup(pool) => cleanup(pool, &ctx, &slot).await,
        }
    })
    .await
    .map_err(|e| match e {
        FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// Releases the nodes of a deleted pool ([`crate::cleanup`]); the finalizer goes only when all succeeded.
async fn cleanup(pool: Arc<HostPool>, ctx: &Context, slot: &Slot) -> Result<Requeue, Error> {
    let name = pool.name_any();
    let cluster = ctx.inventory.cluster();
    let nodes = crate::cleanup::nodes_to_release(&cluster, &pool);
    let mut actions = crate::cleanup::release(&name, &nodes, ctx.settings.dry_run);
    actions.extend(crate::cleanup::finished_migrations(&cluster, &name, ctx.settings.dry_run));
    let report = execute(&slot.client, &slot.recorder, &ctx.inventory, &name, actions).await;
    tracing::info!(pool = %name, nodes = nodes.len(), failures = report.failures, "pool deleted: nodes released");
    if report.failures > 0 {
        return Err(Error::Cleanup(report.failures));
    }
    Ok(Requeue::await_change())
}

/// One pass over a live pool: fetch, [`pass`], execute, patch the status, keep the memo.
async fn reconcile_live(pool: Arc<HostPool>, ctx: &Context, slot: &Slot) -> Result<Requeue, Error> {
    let name = pool.name_any();
    let started = Instant::now();
    let cluster = ctx.inventory.cluster();
    forget_deleted_pools(ctx, &cluster);
    let demand = ctx.demand.lock().map(|d| d.clone()).unwrap_or_default();
    let memo = {
        let mut m = lock(&ctx.memo);
        if m.terms.insert(name.clone(), slot.fence.term()) != Some(slot.fence.term()) {
            m.pools.remove(&name);
        }
        m.pools.get(&name).cloned().unwrap_or_default()
    };
    let totals = ctx.metrics.totals(&name);
    let now = k8s_openapi::jiff::Timestamp::now();
    let out = pass(&PassInput {
        pool: &pool,
        cluster: &cluster,
        demand: &demand,
        settings: ctx.settings,
        memo: &memo,
        totals: &totals,
        now,
    });
    let pass_secs = started.elapsed().as_secs_f64();

    let warnings = lock(&ctx.memo).warnings.filter("observe-warnings", out.warnings);
    let mut actions = out.actions;
    actions.extend(warnings.into_iter().map(Action::Event));
    let report = execute(&slot.client, &slot.recorder, &ctx.inventory, &name, actions).await;
    if !slot.fence.valid() {
        // The pool was lost during the pass: the fence refused what was left; the new holder decides anew.
        tracing::warn!(pool = %name, "lost the pool's Lease during the pass");
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    for (reason, result) in &out.counts {
        ctx.metrics.count_migration(&name, reason, result);
    }
    ctx.baselines.set(&name, out.baseline.clone());
    if let Some(p) = &out.planned {
        ctx.metrics.record_plan(&name, &p.plan, p.in_flight, pass_secs);
        log_pass(&name, p, &report, pass_secs);
    }
    let mut memo = out.memo;
    memo.record_refused(&report.refused, now.as_second());
    lock(&ctx.memo).pools.insert(name.clone(), memo);
    if let Some(mut st) = with_owner(out.status, pool.status.as_ref(), ctx.shards.identity()) {
        st.last_pass_duration_seconds = out.planned.is_some().then_some((pass_secs * 1000.0).round() / 1000.0);
        status::patch(&Api::all(slot.client.clone()), &name, &st).await.map_err(Error::Status)?;
    }
    if let Some(e) = out.refused {
        return Err(Error::Plan(e));
    }
    if let Some(m) = lock(&ctx.memo).pools.get_mut(&name) {
        m.failures = 0;
    }
    Ok(match out.requeue {
        PassRequeue::After(d) => Requeue::requeue(d),
        PassRequeue::OnChange => Requeue::await_change(),
    })
}

/// The status to write with `status.owner` set to this replica: the pass's, or the stored one when only the
/// owner changed.
fn with_owner(
    computed: Option<crate::crd::HostPoolStatus>,
    stored: Option<&crate::crd::HostPoolStatus>,
    me: &str,
) -> Option<crate::crd::HostPoolStatus> {
    let stale = stored.is_none_or(|s| s.owner.as_deref() != Some(me));
    let mut st = computed.or_else(|| stale.then(|| stored.cloned()).flatten())?;
    st.owner = Some(me.to_string());
    Some(st)
}

fn log_pass(pool: &str, p: &PassSummary, report: &ExecReport, seconds: f64) {
    tracing::info!(
        pool = %pool,
        nodes = p.snapshot.nodes.len(),
        vms = p.snapshot.vms.len(),
        imbalance = p.plan.imbalance_before,
        target = p.plan.target_imbalance,
        moves = p.plan.moves.len(),
        placements = p.plan.placements.len(),
        blocked = p.plan.blocked.len(),
        recommended = p.decision.recommendations.len(),
        held = p.decision.held.len(),
        created = report.migrations_created,
        bound = report.pods_bound,
        failures = report.failures,
        balance_due = p.balance_due,
        seconds,
        "pass"
    );
    for h in &p.decision.held {
        tracing::debug!(pool = %pool, vm = %h.vm, why = %h.why, "held");
    }
}

/// Logs and counts a failed pass, and retries it with a per-pool exponential backoff.
pub fn error_policy(pool: Arc<HostPool>, err: &Error, ctx: Arc<Context>) -> Requeue {
    let name = pool.name_any();
    ctx.metrics.pass_error(&name, err.metric_label());
    let n = {
        let mut memo = lock(&ctx.memo);
        let n = &mut memo.pools.entry(name.clone()).or_default().failures;
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

/// Drops the memory and metrics of pools that no longer exist.
fn forget_deleted_pools(ctx: &Context, cluster: &Cluster) {
    let live: BTreeSet<String> = cluster.pools.iter().map(|p| p.name_any()).collect();
    let mut memo = lock(&ctx.memo);
    let gone: Vec<String> = memo.pools.keys().filter(|p| !live.contains(*p)).cloned().collect();
    for p in gone {
        memo.pools.remove(&p);
        memo.terms.remove(&p);
        ctx.metrics.forget_pool(&p);
        ctx.baselines.set(&p, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::HostPoolStatus;

    #[test]
    fn the_status_names_its_owner_and_is_written_when_only_the_owner_changed() {
        let stored = HostPoolStatus { nodes: 3, owner: Some("kubedrs-a".into()), ..HostPoolStatus::default() };
        assert_eq!(with_owner(None, Some(&stored), "kubedrs-a"), None, "nothing changed");
        let taken = with_owner(None, Some(&stored), "kubedrs-b").expect("the owner changed");
        assert_eq!((taken.owner.as_deref(), taken.nodes), (Some("kubedrs-b"), 3));
        let computed = HostPoolStatus { nodes: 4, ..HostPoolStatus::default() };
        let st = with_owner(Some(computed), Some(&stored), "kubedrs-a").expect("the pass's status");
        assert_eq!((st.owner.as_deref(), st.nodes), (Some("kubedrs-a"), 4));
        assert_eq!(with_owner(None, None, "kubedrs-a"), None);
    }
}
