//! Telemetry: Prometheus metrics (names fixed by api.md), `/healthz`, `/readyz`, and the log format.
//!
//! Fed by every step of the pipeline: the pass records the imbalance, the target, the nodes' entitlement
//! ratios and its duration; actuation counts migrations by reason and result. Every series carries the
//! `pool` label besides the ones api.md names.
//!
//! - `kubedrs_pool_imbalance{pool}`: standard deviation of the nodes' normalized entitlement (before the
//!   pass's moves);
//! - `kubedrs_pool_target_imbalance{pool}`;
//! - `kubedrs_node_entitlement_ratio{pool,node,resource}`: `cpu`, `memory` and `combined`, after the plan;
//! - `kubedrs_migrations_total{pool,reason,result}`: `result` is `succeeded` or `failed` (KubeVirt's phase)
//!   of the migrations kubedrs created (a create the API server refused is no migration: it gets a
//!   `MigrationRefused` Event and the engine's backoff);
//! - `kubedrs_migrations_in_flight{pool}`;
//! - `kubedrs_pass_duration_seconds{pool}` (histogram);
//! - also `kubedrs_pass_errors_total{pool,step}`, `kubedrs_passes_put_off_total{pool,reason}` (`caches-stale`:
//!   a pass waits 2 s rather than decide on caches that missed changes), `kubedrs_leader` (1 on a replica that
//!   acts on at least one pool), `kubedrs_pools_owned` (pools whose Lease this replica holds: read from the
//!   fences when scraped, so they drop the moment a fence does) and `kubedrs_objects_skipped{kind}` (objects
//!   no step can read, left out until fixed: see `tolerant.rs`), `kubedrs_heap_allocated_bytes` and
//!   `kubedrs_heap_resident_bytes` (the allocator's figures when scraped: see `heap.rs`).
//!
//! `/healthz` answers 200 while the process serves (liveness: a restart would not help an API server that
//! is down); `/readyz` answers 200 while the caches are fresh and the API server answers, else 503 with
//! the reasons, one a line (see [`crate::readiness`]; on the leader and the followers alike: a ready
//! follower can take over).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use kubedrs_engine::Plan;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;
/// `(reason, result)` -> count.
type Totals = BTreeMap<(String, String), u64>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Every metric of the operator, and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    pub imbalance: Family<Labels, FloatGauge>,
    pub target_imbalance: Family<Labels, FloatGauge>,
    pub entitlement_ratio: Family<Labels, FloatGauge>,
    pub migrations_total: Family<Labels, Counter>,
    pub in_flight: Family<Labels, Gauge>,
    pub pass_duration: Family<Labels, Histogram>,
    pub pass_errors: Family<Labels, Counter>,
    pub passes_put_off: Family<Labels, Counter>,
    pub leader: Gauge,
    pub objects_skipped: Family<Labels, Gauge>,
    pub pools_owned: Gauge,
    pub heap_allocated: Gauge,
    pub heap_resident: Gauge,
    /// Node series published per pool, to drop the ones of nodes that left.
    node_series: Mutex<BTreeMap<String, BTreeSet<Labels>>>,
    /// Finished migrations per pool, `(reason, result)` -> count, for the status `totals`.
    totals: Mutex<BTreeMap<String, Totals>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            imbalance: Family::default(),
            target_imbalance: Family::default(),
            entitlement_ratio: Family::default(),
            migrations_total: Family::default(),
            in_flight: Family::default(),
            pass_duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16))),
            pass_errors: Family::default(),
            passes_put_off: Family::default(),
            leader: Gauge::default(),
            objects_skipped: Family::default(),
            pools_owned: Gauge::default(),
            heap_allocated: Gauge::default(),
            heap_resident: Gauge::default(),
            node_series: Mutex::default(),
            totals: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "kubedrs_pool_imbalance",
            "Standard deviation of the nodes' normalized entitlement",
            m.imbalance.clone(),
        );
        registry.register(
            "kubedrs_pool_target_imbalance",
            "Imbalance the migration threshold tolerates",
            m.target_imbalance.clone(),
        );
        registry.register(
            "kubedrs_node_entitlement_ratio",
            "Sum of the entitlements of a node's VMs over its capacity, after the plan",
            m.entitlement_ratio.clone(),
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "kubedrs_migrations",
            "Migrations kubedrs started that finished, by reason and result",
            m.migrations_total.clone(),
        );
        registry.register(
            "kubedrs_migrations_in_flight",
            "Migrations kubedrs started that have not finished",
            m.in_flight.clone(),
        );
        registry.register(
            "kubedrs_pass_duration_seconds",
            "Duration of a pass (observe, plan, actuate)",
            m.pass_duration.clone(),
        );
        registry.register("kubedrs_pass_errors", "Passes that failed, by step", m.pass_errors.clone());
        registry.register(
            "kubedrs_passes_put_off",
            "Passes not run because deciding then would be unsafe, by reason",
            m.passes_put_off.clone(),
        );
        registry.register(
            "kubedrs_objects_skipped",
            "Watched objects kubedrs cannot read (a field out of range or of the wrong type) and skips, by kind",
            m.objects_skipped.clone(),
        );
        registry.register("kubedrs_leader", "1 on a replica that acts on at least one pool", m.leader.clone());
        registry.register("kubedrs_pools_owned", "Pools whose Lease this replica holds", m.pools_owned.clone());
        registry.register(
            "kubedrs_heap_allocated_bytes",
            "Bytes of memory the operator holds (the allocator's count)",
            m.heap_allocated.clone(),
        );
        registry.register(
            "kubedrs_heap_resident_bytes",
            "Bytes of memory the allocator keeps resident for the operator",
            m.heap_resident.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Records the figures of a planned pass.
    pub fn record_plan(&self, pool: &str, plan: &Plan, in_flight: usize, duration_secs: f64) {
        self.imbalance.get_or_create(&labels(&[("pool", pool)])).set(plan.imbalance_before);
        self.target_imbalance.get_or_create(&labels(&[("pool", pool)])).set(plan.target_imbalance);
        self.in_flight.get_or_create(&labels(&[("pool", pool)])).set(in_flight as i64);
        self.pass_duration.get_or_create(&labels(&[("pool", pool)])).observe(duration_secs);
        let mut now = BTreeSet::new();
        for l in &plan.loads {
            for (resource, v) in [("cpu", l.cpu), ("memory", l.memory), ("combined", l.combined)] {
                let ls = labels(&[("pool", pool), ("node", &l.node), ("resource", resource)]);
                self.entitlement_ratio.get_or_create(&ls).set(if v.is_finite() { v } else { 0.0 });
                now.insert(ls);
            }
        }
        if let Ok(mut series) = self.node_series.lock() {
            for stale in series.get(pool).into_iter().flatten().filter(|ls| !now.contains(*ls)) {
                self.entitlement_ratio.remove(stale);
            }
            series.insert(pool.to_string(), now);
        }
    }

    /// Counts a finished (or refused) migration.
    pub fn count_migration(&self, pool: &str, reason: &str, result: &str) {
        self.migrations_total.get_or_create(&labels(&[("pool", pool), ("reason", reason), ("result", result)])).inc();
        if let Ok(mut t) = self.totals.lock() {
            *t.entry(pool.to_string()).or_default().entry((reason.to_string(), result.to_string())).or_default() += 1;
        }
    }

    /// Finished migrations of a pool since the process started, for the status.
    pub fn totals(&self, pool: &str) -> Vec<crate::crd::MigrationTotal> {
        let Ok(t) = self.totals.lock() else { return vec![] };
        t.get(pool)
            .into_iter()
            .flatten()
            .map(|((reason, result), count)| crate::crd::MigrationTotal {
                reason: reason.clone(),
                result: result.clone(),
                count: *count,
            })
            .collect()
    }

    pub fn pass_error(&self, pool: &str, step: &str) {
        self.pass_errors.get_or_create(&labels(&[("pool", pool), ("step", step)])).inc();
    }

    pub fn pass_put_off(&self, pool: &str, reason: &str) {
        self.passes_put_off.get_or_create(&labels(&[("pool", pool), ("reason", reason)])).inc();
    }

    /// Drops the series of a deleted pool.
    pub fn forget_pool(&self, pool: &str) {
        let p = labels(&[("pool", pool)]);
        self.imbalance.remove(&p);
        self.target_imbalance.remove(&p);
        self.in_flight.remove(&p);
        if let Ok(mut series) = self.node_series.lock() {
            for ls in series.remove(pool).into_iter().flatten() {
                self.entitlement_ratio.remove(&ls);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Shared by the HTTP handlers.
#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// Are the caches fresh (see [`crate::readiness`])?
    pub readiness: crate::readiness::Readiness,
    /// With `--leader-elect`: the pools this replica holds, read when `/metrics` is scraped. A fence goes down
    /// on the clock, even while the tick that would notice waits on an unreachable API server.
    pub shards: Option<crate::leader::Shards>,
}

async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    if let Some(shards) = &h.shards {
        let owned = shards.owned();
        h.metrics.pools_owned.set(i64::try_from(owned).unwrap_or(i64::MAX));
        h.metrics.leader.set(i64::from(owned > 0));
    }
    if let Some(f) = crate::heap::figures() {
        h.metrics.heap_allocated.set(i64::try_from(f.allocated).unwrap_or(i64::MAX));
        h.metrics.heap_resident.set(i64::try_from(f.resident).unwrap_or(i64::MAX));
    }
    match h.metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    match h.readiness.check() {
        Ok(()) => (StatusCode::OK, "ok".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why.join("\n")),
    }
}

pub fn router(h: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(h)
}

/// Serves `/metrics`, `/healthz` and `/readyz` over plain HTTP.
pub async fn serve(addr: SocketAddr, h: Health) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics and health listening");
    axum::serve(listener, router(h)).await?;
    Ok(())
}

/// The filter directives: `RUST_LOG`, unless unset or blank (the chart's `logLevel: ""`), which means the
/// default `info,kube_runtime=warn` rather than nothing but errors.
pub fn log_directives(rust_log: Option<String>) -> String {
    rust_log.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "info,kube_runtime=warn".into())
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the tracing subscriber; the filter comes from `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(log_directives(std::env::var("RUST_LOG").ok()));
    // Colours only on a terminal: `kubectl logs` and log collectors would get the escape codes as text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kubedrs_engine::NodeLoad;

    #[test]
    fn a_blank_rust_log_means_the_default_level() {
        assert_eq!(log_directives(None), "info,kube_runtime=warn");
        assert_eq!(log_directives(Some(String::new())), "info,kube_runtime=warn");
        assert_eq!(log_directives(Some("  ".into())), "info,kube_runtime=warn");
        assert_eq!(log_directives(Some("debug".into())), "debug");
    }

    #[test]
    fn the_names_of_api_md_are_exposed_and_stale_nodes_dropped() {
        let m = Metrics::new();
        let load = |n: &str| NodeLoad { node: n.into(), cpu: 0.5, memory: 0.25, combined: 0.4, vms: 1, counted: true };
        let plan = Plan {
            imbalance_before: 0.2,
            target_imbalance: 0.1,
            loads: vec![load("n1"), load("n2")],
            ..Plan::default()
        };
        m.record_plan("prod", &plan, 2, 0.05);
        m.count_migration("prod", "balance", "succeeded");
        let text = m.encode().unwrap();
        for name in [
            "kubedrs_pool_imbalance{pool=\"prod\"} 0.2",
            "kubedrs_pool_target_imbalance{pool=\"prod\"} 0.1",
            "kubedrs_node_entitlement_ratio{pool=\"prod\",node=\"n2\",resource=\"cpu\"} 0.5",
            "kubedrs_migrations_total{pool=\"prod\",reason=\"balance\",result=\"succeeded\"} 1",
            "kubedrs_migrations_in_flight{pool=\"prod\"} 2",
            "kubedrs_pass_duration_seconds_count{pool=\"prod\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
        m.record_plan("prod", &Plan { loads: vec![load("n1")], ..Plan::default() }, 0, 0.01);
        assert!(!m.encode().unwrap().contains("node=\"n2\""));
        assert_eq!(m.totals("prod")[0].count, 1);
    }
}
