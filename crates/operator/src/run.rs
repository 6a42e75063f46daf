//! `kubedrs run`: the operator's main. Wires the pipeline together: reflectors ([`super::inventory`]),
//! the pools shared out on Leases ([`super::leader`]), the per-pool controller ([`super::controller`]), the demand poller,
//! `/metrics` + `/healthz` + `/readyz` ([`super::telemetry`]) and, when asked, the admission webhooks
//! ([`super::webhook`]: the CPU baseline on VMIs, the HostPool overlap check).
//!
//! Every flag has an environment variable (`KUBEDRS_...`) for the chart. The process stops on SIGTERM or
//! SIGINT after the passes in progress end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::{Controller, controller};

use crate::controller::{Context, Memo, error_policy, reconcile};
use crate::crd::parse_duration;
use crate::inventory::{self, Reflectors, Trigger, debounced};
use crate::leader::{self, Shards};
use crate::observe::DemandWindow;
use crate::pass::Settings;
use crate::readiness::Readiness;
use crate::telemetry::{self, Health, LogFormat, Metrics};
use crate::tolerant::Skipped;
use crate::webhook::{self, Baselines, WebhookState};

/// Longest wait for one API request of a pass (a watch is not bounded: it is a long poll).
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of `kubedrs run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Address of `/metrics`, `/healthz` and `/readyz` (plain HTTP).
    #[arg(long, env = "KUBEDRS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format on stderr. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "KUBEDRS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Share the pools out across replicas on Leases: each pool is acted on by the one replica holding its
    /// Lease, and a replica stops acting before its Lease can expire. Without it this process acts on every
    /// pool (run one replica only).
    #[arg(long, env = "KUBEDRS_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Leases (the chart sets `POD_NAMESPACE` from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kubedrs-system")]
    pub lease_namespace: String,
    /// Prefix of the Lease names: `<prefix>-pool-<pool>` per HostPool, `<prefix>-member-<replica>` per
    /// replica (1-40 characters of a-z, 0-9 and '-').
    #[arg(long, env = "KUBEDRS_LEASE_NAME", default_value = "kubedrs")]
    pub lease_name: String,
    /// Decide and report (status, Events, metrics) but change nothing: no migration, no binding, no cordon.
    #[arg(long, env = "KUBEDRS_DRY_RUN")]
    pub dry_run: bool,
    /// Serve the admission webhooks (HTTPS: the CPU baseline on new VMIs, the HostPool overlap check) on
    /// this address, e.g. `0.0.0.0:9443`.
    #[arg(long, env = "KUBEDRS_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// PEM certificate of the webhook.
    #[arg(long, env = "KUBEDRS_WEBHOOK_CERT", default_value = "/etc/kubedrs/tls/tls.crt")]
    pub webhook_cert: PathBuf,
    /// PEM private key of the webhook.
    #[arg(long, env = "KUBEDRS_WEBHOOK_KEY", default_value = "/etc/kubedrs/tls/tls.key")]
    pub webhook_key: PathBuf,
    /// How often VM usage is read from metrics.k8s.io.
    #[arg(long, env = "KUBEDRS_DEMAND_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub demand_interval: Duration,
    /// Quiet time after a relevant change before the triggered pass (a burst of changes makes one pass).
    #[arg(long, env = "KUBEDRS_DEBOUNCE", default_value = "2s", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Quiet time instead of --debounce after a change a user waits on: a node's maintenance annotation,
    /// cordon or readiness, a VM waiting to be placed.
    #[arg(long, env = "KUBEDRS_URGENT_DEBOUNCE", default_value = "100ms", value_parser = parse_duration)]
    pub urgent_debounce: Duration,
    /// Finished migrations kubedrs keeps per pool beyond the 24 h history (older ones are deleted).
    #[arg(long, env = "KUBEDRS_KEEP_FINISHED", default_value_t = 20)]
    pub keep_finished: usize,
    /// Wait after a VM's first failed migration (since its last successful one) before trying again;
    /// doubles per further failure, up to --failure-backoff-max. The engine applies it to every pool.
    #[arg(long, env = "KUBEDRS_FAILURE_BACKOFF", default_value = "5m", value_parser = parse_duration)]
    pub failure_backoff: Duration,
    /// Longest wait after failed migrations.
    #[arg(long, env = "KUBEDRS_FAILURE_BACKOFF_MAX", default_value = "4h", value_parser = parse_duration)]
    pub failure_backoff_max: Duration,
}

/// Runs the operator until SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(main(args))
}

async fn main(args: RunArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    telemetry::init_logging(args.log_format);
    // No request may hold a pass: kube's client retries 429/503/504 for minutes by default; here such an
    // answer fails that request (the pass retries on its next run), and a request waits at most
    // API_TIMEOUT. Watches get their own client without the read timeout (a watch is a long poll).
    let mut config = kube::Config::infer().await.context("reading the Kubernetes client configuration")?;
    config.default_retry = false;
    let watch_client = Client::try_from(config.clone()).context("connecting to the Kubernetes API")?;
    config.read_timeout = Some(API_TIMEOUT);
    config.reset_reader_on_write = true;
    let client = Client::try_from(config).context("connecting to the Kubernetes API")?;
    let identity = leader::identity();
    tracing::info!(%identity, dry_run = args.dry_run, leader_elect = args.leader_elect, "kubedrs starting");

    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::default();
    tokio::spawn(readiness.clone().probe_forever(client.clone()));
    let reporter = Reporter { controller: "kubedrs".into(), instance: Some(identity.clone()) };
    let shards = if args.leader_elect {
        Shards::elect(client.clone(), reporter, &args.lease_namespace, &args.lease_name, &identity)?
    } else {
        Shards::all(client.clone(), reporter, &identity)
    };
    let health = Health {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        shards: args.leader_elect.then(|| shards.clone()),
    };
    tokio::spawn({
        let addr = args.metrics_addr;
        async move {
            if let Err(e) = telemetry::serve(addr, health).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        }
    });

    // Reflectors.
    // The controller owns the HostPool reflector; a pool's spec, labels, annotations or deletion trigger its
    // pass, its status (which passes write) does not (`inventory::pool_input`).
    let (trigger, pokes) = Trigger::new();
    let skipped = Skipped::new(metrics.objects_skipped.clone());
    let reflectors = Reflectors { trigger: trigger.clone(), skipped, readiness: readiness.clone() };
    let (inv, (pool_stream, pool_store)) = inventory::start(&watch_client, &reflectors);
    let controller = Controller::for_stream(pool_stream, pool_store)
        .with_config(controller::Config::default().concurrency(2).debounce(args.urgent_debounce));

    let demand = Arc::new(Mutex::new(DemandWindow::default()));
    tokio::spawn(inventory::poll_demand(client.clone(), inv.clone(), demand.clone(), args.demand_interval));

    let baselines = Baselines::default();
    if let Some(addr) = args.webhook_addr {
        let state = WebhookState {
            baselines: baselines.clone(),
            vms: Some(inv.vms.clone()),
            namespaces: Some(inv.namespaces.clone()),
            pools: Some(inv.pools.clone()),
            nodes: Some(inv.nodes.clone()),
        };
        let (cert, key) = (args.webhook_cert.clone(), args.webhook_key.clone());
        tokio::spawn(async move {
            if let Err(e) = webhook::serve(addr, cert, key, state).await {
                tracing::error!(error = %e, "webhook server stopped");
            }
        });
    }

    // Passes start once every cache has listed its objects (the HostPool stream is driven by the controller).
    inv.wait_ready().await.context("caches")?;
    tracing::info!("caches synced");

    // Leases: a pass as soon as this replica takes a pool (the gauges are read from the fences, see `Health`).
    tokio::spawn(shards.clone().run(inv.pools.clone(), {
        let trigger = trigger.clone();
        move |tick| {
            if tick.acquired {
                trigger.poke();
            }
        }
    }));
    if !args.leader_elect {
        metrics.leader.set(1);
    }

    let ctx = Arc::new(Context {
        client,
        inventory: inv,
        demand,
        metrics,
        shards: shards.clone(),
        baselines,
        settings: Settings {
            dry_run: args.dry_run,
            backoff: kubedrs_engine::Backoff {
                base_secs: args.failure_backoff.as_secs().max(1),
                max_secs: args.failure_backoff_max.as_secs().max(args.failure_backoff.as_secs().max(1)),
            },
            keep_finished: args.keep_finished,
        },
        memo: Mutex::new(Memo::default()),
        readiness,
    });
    controller
        .reconcile_all_on(debounced(pokes, args.debounce, args.urgent_debounce))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller");
            }
        })
        .await;
    shards.release_all().await;
    tracing::info!("kubedrs stopped");
    Ok(())
}
