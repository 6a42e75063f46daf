//! `kubedrs run`: the operator's main. Wires the pipeline together: reflectors ([`super::inventory`]),
//! leader election ([`super::leader`]), the per-pool controller ([`super::controller`]), the demand poller,
//! `/metrics` + `/healthz` + `/readyz` ([`super::telemetry`]) and, when asked, the CPU-baseline admission
//! webhook ([`super::webhook`]).
//!
//! Every flag has an environment variable (`KUBEDRS_...`) for the chart. The process stops on SIGTERM or
//! SIGINT after the passes in progress end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, Client};

use crate::controller::{Context, Memo, error_policy, reconcile};
use crate::crd::{HostPool, parse_duration};
use crate::inventory::{self, Trigger, debounced};
use crate::leader::{self, Leadership};
use crate::observe::DemandWindow;
use crate::pass::Settings;
use crate::telemetry::{self, Health, LogFormat, Metrics};
use crate::webhook::{self, Baselines, WebhookState};

/// Flags of `kubedrs run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Address of `/metrics`, `/healthz` and `/readyz` (plain HTTP).
    #[arg(long, env = "KUBEDRS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format on stderr. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "KUBEDRS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Take part in leader election on a Lease: only the leader acts (run two replicas with this).
    #[arg(long, env = "KUBEDRS_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Lease (the chart sets `POD_NAMESPACE` from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kubedrs-system")]
    pub lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, env = "KUBEDRS_LEASE_NAME", default_value = "kubedrs")]
    pub lease_name: String,
    /// Decide and report (status, Events, metrics) but change nothing: no migration, no binding, no cordon.
    #[arg(long, env = "KUBEDRS_DRY_RUN")]
    pub dry_run: bool,
    /// Serve the CPU-baseline admission webhook (HTTPS) on this address, e.g. `0.0.0.0:9443`.
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
    /// Quiet time after a relevant change before the triggered pass.
    #[arg(long, env = "KUBEDRS_DEBOUNCE", default_value = "2s", value_parser = parse_duration)]
    pub debounce: Duration,
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
    let client = Client::try_default().await.context("connecting to the Kubernetes API")?;
    let identity = leader::identity();
    tracing::info!(%identity, dry_run = args.dry_run, leader_elect = args.leader_elect, "kubedrs starting");

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let health = Health { metrics: metrics.clone(), ready: ready.clone() };
    tokio::spawn({
        let addr = args.metrics_addr;
        async move {
            if let Err(e) = telemetry::serve(addr, health).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        }
    });

    let leadership = if args.leader_elect {
        Leadership::elect(client.clone(), &args.lease_namespace, &args.lease_name, &identity)
            .await
            .context("starting leader election")?
    } else {
        Leadership::always()
    };

    // Reflectors.
    // The controller owns the HostPool reflector; a pass that patches the status triggers one more pass,
    // which finds nothing to change (the status is patched only when it changed).
    let controller = Controller::new(Api::<HostPool>::all(client.clone()), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(2).debounce(Duration::from_secs(1)));
    let (trigger, pokes) = Trigger::new();
    let inv = inventory::start(&client, controller.store(), &trigger);

    // Leadership: metric, and a pass as soon as this replica takes over.
    tokio::spawn({
        let mut changes = leadership.subscribe();
        let metrics = metrics.clone();
        let trigger = trigger.clone();
        async move {
            loop {
                let leads = *changes.borrow_and_update();
                metrics.leader.set(i64::from(leads));
                if leads {
                    trigger.poke();
                }
                if changes.changed().await.is_err() {
                    break;
                }
            }
        }
    });

    let demand = Arc::new(Mutex::new(DemandWindow::default()));
    tokio::spawn(inventory::poll_demand(client.clone(), inv.clone(), demand.clone(), args.demand_interval));

    let baselines = Baselines::default();
    if let Some(addr) = args.webhook_addr {
        let state = WebhookState {
            baselines: baselines.clone(),
            vms: Some(inv.vms.clone()),
            namespaces: Some(inv.namespaces.clone()),
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
    ready.store(true, Ordering::Relaxed);
    tracing::info!("caches synced");

    let recorder = Recorder::new(client.clone(), Reporter { controller: "kubedrs".into(), instance: Some(identity) });
    let ctx = Arc::new(Context {
        client,
        inventory: inv,
        demand,
        metrics,
        leader: leadership,
        recorder,
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
    });
    controller
        .reconcile_all_on(debounced(pokes, args.debounce))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller");
            }
        })
        .await;
    tracing::info!("kubedrs stopped");
    Ok(())
}
