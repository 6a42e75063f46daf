//! `kubevirt-node`: plays virt-handler and the kubelet of virt-launcher pods on every KWOK node, beside
//! the real virt-controller and virt-api, against the API server of `KUBECONFIG` (see
//! `kubedrs_e2e::node` and `docs/e2e.md`).

use std::time::Duration;

use clap::Parser;

/// The node half of KubeVirt (virt-handler, the kubelet of virt-launcher pods) on KWOK nodes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Memory copied per second during a live migration (MiB/s): a migration takes guest memory / rate.
    #[arg(long, env = "EMULATOR_MIGRATION_RATE", default_value_t = 2048.0)]
    migration_rate: f64,
    /// Minimum time between two steps of a migration (milliseconds).
    #[arg(long, env = "EMULATOR_PHASE_STEP_MS", default_value_t = 200)]
    phase_step_ms: u64,
    /// Probability (0..1) that a migration fails at the end of its copy.
    #[arg(long, env = "EMULATOR_FAILURE_RATE", default_value_t = 0.0)]
    failure_rate: f64,
    /// Seed of the failure draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// virt-handler's heartbeat period (seconds).
    #[arg(long, default_value_t = 30)]
    heartbeat_secs: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "info,kube=warn".into()),
        ))
        .with_writer(std::io::stderr)
        .init();
    let cfg = kubedrs_e2e::node::Config {
        migration_rate_mib_s: args.migration_rate,
        phase_step: Duration::from_millis(args.phase_step_ms),
        failure_rate: args.failure_rate.clamp(0.0, 1.0),
        seed: args.seed,
        heartbeat: Duration::from_secs(args.heartbeat_secs.max(1)),
        ..kubedrs_e2e::node::Config::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = kube::Client::try_default().await?;
        // virt-handler's identity (its service account's kubeconfig), else the same client.
        let handler = match std::env::var_os("KUBEVIRT_HANDLER_KUBECONFIG") {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(&path)?;
                let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
                kube::Client::try_from(cfg)?
            }
            None => client.clone(),
        };
        kubedrs_e2e::node::run(client, handler, cfg).await
    })
}
