//! `kubevirt-emulator`: plays KubeVirt's virt-controller and virt-handler against the API server of
//! `KUBECONFIG` (see `kubedrs_e2e::emulator` and `docs/e2e.md`).

use std::time::Duration;

use clap::Parser;

/// Emulates KubeVirt (VMs -> VMIs -> virt-launcher pods, live migrations) on a cluster without KubeVirt.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Memory copied per second during a live migration (MiB/s): a migration takes guest memory / rate.
    #[arg(long, env = "EMULATOR_MIGRATION_RATE", default_value_t = 2048.0)]
    migration_rate: f64,
    /// Minimum time between two phases of a migration (milliseconds).
    #[arg(long, env = "EMULATOR_PHASE_STEP_MS", default_value_t = 200)]
    phase_step_ms: u64,
    /// Probability (0..1) that a migration fails at the end of its copy.
    #[arg(long, env = "EMULATOR_FAILURE_RATE", default_value_t = 0.0)]
    failure_rate: f64,
    /// Seed of the failure draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// KubeVirt's parallelMigrationsPerCluster.
    #[arg(long, default_value_t = 5)]
    parallel_migrations: usize,
    /// KubeVirt's parallelOutboundMigrationsPerNode.
    #[arg(long, default_value_t = 2)]
    parallel_outbound: usize,
    /// KubeVirt's unschedulablePendingTimeoutSeconds for migration target pods.
    #[arg(long, default_value_t = 300)]
    unschedulable_timeout_secs: u64,
    /// Port of the `pods/eviction` webhook on 127.0.0.1 (0: any free port; the registration names it).
    #[arg(long, env = "EMULATOR_WEBHOOK_PORT", default_value_t = 0)]
    webhook_port: u16,
    /// Name of the webhook's ValidatingWebhookConfiguration (virt-operator's is virt-api-validator).
    #[arg(long, env = "EMULATOR_WEBHOOK_CONFIG", default_value = kubedrs_e2e::eviction::CONFIG_NAME)]
    webhook_config_name: String,
    /// Do not serve or register the eviction webhook (evictions then delete launcher pods outright).
    #[arg(long)]
    no_eviction_webhook: bool,
    /// Cluster-wide eviction strategy (KubeVirt.spec.configuration.evictionStrategy) for VMIs without one:
    /// None, LiveMigrate, LiveMigrateIfPossible or External.
    #[arg(long, value_parser = ["None", "LiveMigrate", "LiveMigrateIfPossible", "External"])]
    cluster_eviction_strategy: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "info,kube=warn".into()),
        ))
        .with_writer(std::io::stderr)
        .init();
    let cfg = kubedrs_e2e::emulator::Config {
        migration_rate_mib_s: args.migration_rate,
        phase_step: Duration::from_millis(args.phase_step_ms),
        failure_rate: args.failure_rate.clamp(0.0, 1.0),
        seed: args.seed,
        parallel_migrations: args.parallel_migrations.max(1),
        parallel_outbound_per_node: args.parallel_outbound.max(1),
        unschedulable_timeout: Duration::from_secs(args.unschedulable_timeout_secs),
        eviction_webhook: !args.no_eviction_webhook,
        webhook_port: args.webhook_port,
        webhook_config_name: args.webhook_config_name,
        cluster_eviction_strategy: args.cluster_eviction_strategy,
        ..kubedrs_e2e::emulator::Config::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = kube::Client::try_default().await?;
        kubedrs_e2e::emulator::run(client, cfg).await
    })
}
