//! Child processes the scenarios start (the operator, the node emulator), their HTTP endpoints and metrics.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::*;

// Child processes

/// A child process (operator or emulator) whose output goes to a log file; killed when dropped.
pub struct Child {
    pub name: String,
    pub log: PathBuf,
    child: std::process::Child,
}

impl Child {
    pub fn spawn(name: &str, program: &Path, args: &[String], env: &[(&str, String)]) -> anyhow::Result<Child> {
        std::fs::create_dir_all(log_dir())?;
        let log = log_dir().join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err).env("KUBECONFIG", kubeconfig_path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
        eprintln!("  started {name} (pid {}), log {}", child.id(), log.display());
        Ok(Child { name: name.to_string(), log, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `grace` for the exit (SIGKILL after).
    pub fn terminate(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.is_running() {
            self.terminate(Duration::from_secs(5));
        }
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// GET `http://127.0.0.1:<port><path>` (plain HTTP/1.0), the body.
pub fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// The value of one Prometheus sample (`name{labels}` exactly as printed, or a prefix match on the name
/// when `labels` is empty), summed over matching lines.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n != name || !labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))) {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

// Components of `e2e/cluster up`

/// The pid of a component `e2e/cluster up` started (`<run dir>/pids/<name>.pid`), if it runs.
pub fn component_pid(name: &str) -> Option<u32> {
    let pid: u32 =
        std::fs::read_to_string(run_dir().join("pids").join(format!("{name}.pid"))).ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// How many times `e2e/cluster`'s supervisor (`e2e/lib/supervise.sh`) restarted a component
/// (`virt-controller`, `virt-api`): `<run dir>/restarts/<name>`; `None` if it is not supervised.
pub fn component_restarts(name: &str) -> Option<u64> {
    std::fs::read_to_string(run_dir().join("restarts").join(name)).ok()?.trim().parse().ok()
}
