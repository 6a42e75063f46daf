//! What the scenarios use: the cluster started by `e2e/cluster up`, child processes that die with the
//! test, polling with a timeout (never a fixed sleep), and builders for pools, VMs and load.
//!
//! Scenarios run one at a time (a process-wide lock) against one cluster. [`Scenario::start`] first resets
//! what an earlier scenario may have left (HostPools, its namespaces, node labels, annotations and
//! cordons), so a failed scenario never spoils the next one; [`Scenario::finish`] resets again.
//!
//! By role: [`poll`] (deadlines), [`process`] (children, HTTP, metrics text), [`objects`] (builders),
//! [`scenario`] (a scenario and the cluster reset), [`kwok`] (descheduler, KWOK pools, metrics API); paths
//! and binaries here.

mod cluster;
mod invariants;
mod kwok;
mod objects;
mod poll;
mod process;
mod proxy;
mod scenario;

pub use cluster::*;
pub use invariants::*;
pub use kwok::*;
pub use objects::*;
pub use poll::*;
pub use process::*;
pub use proxy::*;
pub use scenario::*;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Label on every namespace a scenario creates (reset deletes them).
pub const TEST_LABEL: &str = "e2e.kubedrs.io/scenario";
pub const POOL_LABEL: &str = "kubedrs.io/pool";
pub const MAINTENANCE: &str = "kubedrs.io/maintenance";
pub const MAINTENANCE_STATE: &str = "kubedrs.io/maintenance-state";
pub const MAINTENANCE_MESSAGE: &str = "kubedrs.io/maintenance-message";
pub const MAINTENANCE_CORDONED: &str = "kubedrs.io/maintenance-cordoned";

pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The repository's root (this crate is `e2e/harness`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

/// `E2E_RUN_DIR`, else `e2e/.run`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("E2E_RUN_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("e2e/.run"))
}

/// The cluster's kubeconfig: `E2E_KUBECONFIG`, else `<run dir>/kubeconfig`.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("E2E_KUBECONFIG").map(PathBuf::from).unwrap_or_else(|| run_dir().join("kubeconfig"))
}

/// A client for the e2e cluster.
pub async fn client() -> anyhow::Result<Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = kubeconfig_path();
    let kc = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading {} (is the cluster up? `e2e/cluster up`)", path.display()))?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// The directory of a test binary's sibling binaries (`target/<profile>`).
pub(crate) fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test>-<hash>
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

/// The operator binary: `KUBEDRS_BIN`, else `kubedrs` next to this test's target directory (built by
/// `e2e/test` with `cargo build --bin kubedrs` before the suite).
pub fn kubedrs_bin() -> PathBuf {
    std::env::var_os("KUBEDRS_BIN").map(PathBuf::from).unwrap_or_else(|| target_profile_dir().join("kubedrs"))
}

/// The node emulator binary: `KUBEVIRT_NODE_BIN`, else `kubevirt-node` in the target directory.
pub fn node_emulator_bin() -> PathBuf {
    std::env::var_os("KUBEVIRT_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_profile_dir().join("kubevirt-node"))
}

/// Logs of the processes a scenario starts: `<run dir>/logs/e2e/`.
pub fn log_dir() -> PathBuf {
    run_dir().join("logs/e2e")
}
