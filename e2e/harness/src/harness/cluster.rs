//! The control plane's own processes, for fault injection: stop, freeze and restart a component that
//! `e2e/cluster up` started (kube-apiserver, etcd, ...) the way `e2e/cluster` itself would, and take a KWOK
//! node's heartbeat away.
//!
//! `e2e/cluster` keeps each component's pid in `<run dir>/pids/<name>.pid` and its command line (shell
//! quoted) in `<run dir>/logs/<name>.cmdline`; a restart runs that command line again in its own session and
//! writes the new pid, so `e2e/cluster down` stops the restarted process as any other.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::*;

/// The annotation KWOK manages nodes by (`--manage-nodes-with-annotation-selector`).
pub const KWOK_MANAGED: &str = "kwok.x-k8s.io/node";

/// A component of the local control plane (`etcd`, `kube-apiserver`, ...).
pub struct Component {
    pub name: String,
}

impl Component {
    pub fn new(name: &str) -> Component {
        Component { name: name.to_string() }
    }

    fn pid_file(&self) -> PathBuf {
        run_dir().join("pids").join(format!("{}.pid", self.name))
    }

    /// The pid `e2e/cluster` recorded, if that process lives.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let f = self.pid_file();
        let pid: u32 = std::fs::read_to_string(&f)
            .with_context(|| format!("reading {} (is the cluster up?)", f.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} holds no pid", f.display()))?;
        if !alive(pid) {
            bail!("{} (pid {pid}) is not running", self.name);
        }
        Ok(pid)
    }

    /// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`) to the component.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid()?;
        send_signal(pid, signal)
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the process is gone.
    pub fn stop(&self, grace: Duration) -> anyhow::Result<()> {
        let pid = self.pid()?;
        send_signal(pid, "TERM")?;
        let start = Instant::now();
        while alive(pid) {
            if start.elapsed() > grace {
                send_signal(pid, "KILL")?;
            }
            if start.elapsed() > grace + Duration::from_secs(10) {
                bail!("{} (pid {pid}) does not exit", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("  stopped {} (pid {pid})", self.name);
        Ok(())
    }

    /// Starts the component again with the command line `e2e/cluster` started it with (appending to its
    /// log), in its own session, and records the new pid.
    pub fn start(&self) -> anyhow::Result<u32> {
        let logs = run_dir().join("logs");
        let cmdline_file = logs.join(format!("{}.cmdline", self.name));
        let cmdline =
            std::fs::read_to_string(&cmdline_file).with_context(|| format!("reading {}", cmdline_file.display()))?;
        let log =
            std::fs::OpenOptions::new().append(true).create(true).open(logs.join(format!("{}.log", self.name)))?;
        let child = Command::new("setsid")
            .args(["bash", "-c", &format!("exec {cmdline}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("restarting {}", self.name))?;
        let pid = child.id();
        std::fs::write(self.pid_file(), format!("{pid}\n"))?;
        eprintln!("  restarted {} (pid {pid})", self.name);
        Ok(pid)
    }
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its parent) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// `kill -<signal> <pid>`.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let st = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status()?;
    if !st.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

/// Waits until the API server answers `/readyz` (through `client`).
pub async fn api_ready(client: &Client, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    eventually("kube-apiserver /readyz", timeout, || async {
        let req = axum::http::Request::get("/readyz").body(Vec::new())?;
        Ok(match client.request_text(req).await {
            Ok(t) if t.trim() == "ok" => Ok(()),
            Ok(t) => Err(t),
            Err(e) => Err(e.to_string()),
        })
    })
    .await?;
    Ok(start.elapsed())
}

/// Takes KWOK's management of `node` away (`stop = true`: its Lease is no longer renewed, and after the
/// controller manager's grace period the node turns NotReady) or gives it back.
pub async fn node_heartbeat(client: &Client, node: &str, stop: bool) -> anyhow::Result<()> {
    let v = if stop { None } else { Some("fake") };
    let patch = json!({"metadata": {"annotations": {KWOK_MANAGED: v}}});
    Api::<Node>::all(client.clone()).patch(node, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// Whether `node`'s Ready condition is `True`.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}
