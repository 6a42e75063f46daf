//! The per-pool reconcile, run by kube's `Controller` on every HostPool: **fetch -> pass -> execute ->
//! patch status -> keep the memo**.
//!
//! 1. a follower returns at once (requeue 5 s): only the leader acts, binds pods and writes status;
//! 2. fetch: the reflector stores ([`crate::inventory`]), the demand window, the pool's memo;
//! 3. [`crate::pass::pass`], a pure function, decides everything: actions, Events, status, memo;
//! 4. [`crate::execute::execute`] applies the actions; metrics are recorded; the pool's CPU baseline is
//!    published to the admission webhook;
//! 5. the status is patched when the pass says it is worth it; the memo is kept for the next pass;
//! 6. requeue after the pool's `interval`, always. Changes in between trigger passes too (debounced, see
//!    `inventory.rs`); those passes execute placements and mandatory moves, balancing waits for the
//!    interval. Errors are logged, counted, and retried with a per-pool exponential backoff (5 s .. 5 min).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::Recorder;
use kube::{Api, Client, ResourceExt};

use crate::actuate::Action;
use crate::crd::HostPool;
use crate::events::EventMemo;
use crate::execute::{Report as ExecReport, execute};
use crate::inventory::Inventory;
use crate::leader::Leadership;
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

/// What passes remember between them, per pool (see [`PoolMemo`]), and the observe warnings already said.
#[derive(Debug, Default)]
pub struct Memo {
    pub pools: BTreeMap<String, PoolMemo>,
    pub warnings: EventMemo,
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

/// Reconciles one pool: fetch, [`pass`], execute, patch the status, keep the memo (see the module docs).
pub async fn reconcile(pool: Arc<HostPool>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    if !ctx.leader.is_leader() {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    let name = pool.name_any();
    let started = Instant::now();
    let cluster = ctx.inventory.cluster();
    forget_deleted_pools(&ctx, &cluster);
    let demand = ctx.demand.lock().map(|d| d.clone()).unwrap_or_default();
    let memo = lock(&ctx.memo).pools.get(&name).cloned().unwrap_or_default();
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
    let report = execute(&ctx.client, &ctx.recorder, &ctx.inventory, &name, actions).await;
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
    if let Some(mut st) = out.status {
        st.last_pass_duration_seconds = out.planned.is_some().then_some((pass_secs * 1000.0).round() / 1000.0);
        status::patch(&Api::all(ctx.client.clone()), &name, &st).await.map_err(Error::Status)?;
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
        ctx.metrics.forget_pool(&p);
        ctx.baselines.set(&p, None);
    }
}
