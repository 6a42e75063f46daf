//! kubedrs under faults, on the local control plane of `e2e/cluster up` with the real KubeVirt
//! (virt-controller, virt-api) and the node emulator `kubevirt-node`. Run by `e2e/faults`; alone:
//!
//! ```sh
//! e2e/cluster up --nodes 6 && cargo build --bin kubedrs -p kubedrs-e2e --bin kubevirt-node
//! cargo test -p kubedrs-e2e --test faults -- --test-threads=1 --nocapture
//! ```
//!
//! Each fault runs with the harness's invariant checker ([`Invariants`]): nothing lost, nothing doubled,
//! limits kept, no migration left unfinished, the maintenance node ends `InMaintenance`, and the recovery
//! time after the fault. A fault test first records every check, then fails with all that did not hold;
//! each appends a row to `<log dir>/faults-summary.tsv` (fault, violations, recovery, notes), which
//! `e2e/faults` prints as a table. `docs/e2e.md` (Faults) says what each one proves.
//!
//! Knobs: `E2E_FAULT_SECS` (length of the kill loop, default 180), `E2E_FAULT_SEED` (seed of the kill
//! intervals, default 13), `E2E_FAULT_DOWN_SECS` (how long kube-apiserver or etcd stays down, default 20).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use kubedrs_e2e::harness::*;
use kubedrs_e2e::kubevirt::str_at;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);
/// The operator's lease (crates/operator/src/leader.rs).
const LEASE: Duration = Duration::from_secs(15);

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn nodes(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("kwok-node-{i}")).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// What one fault test found: the checks that failed (the test fails with all of them at the end).
#[derive(Default)]
struct Outcome {
    failed: Vec<String>,
    notes: Vec<String>,
}

impl Outcome {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            let w = what.into();
            eprintln!("  CHECK FAILED: {w}");
            self.failed.push(w);
        }
    }
    fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        eprintln!("  note: {n}");
        self.notes.push(n);
    }

    /// Appends the summary row, then fails with every violation and failed check.
    fn conclude(mut self, fault: &str, report: &Report, recovery: &str) -> anyhow::Result<()> {
        report.print(fault);
        if !report.record.emulator_lag.is_empty() {
            self.note(format!(
                "node emulator lag: {} source launcher pod(s) kept running after the hand-over",
                report.record.emulator_lag.len()
            ));
        }
        for v in &report.record.violations {
            self.failed.push(format!("invariant: {v}"));
        }
        let row = format!(
            "{fault}\t{}\t{}\t{recovery}\t{}\n",
            report.record.violations.len(),
            self.failed.len() - report.record.violations.len(),
            self.notes.join("; ")
        );
        let path = log_dir().join("faults-summary.tsv");
        let _ = std::fs::create_dir_all(log_dir());
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            let _ = f.write_all(row.as_bytes());
        }
        eprintln!("  SUMMARY {}", row.trim_end());
        if !self.failed.is_empty() {
            bail!("{} check(s) failed:\n  {}", self.failed.len(), self.failed.join("\n  "));
        }
        Ok(())
    }
}

/// `/metrics` of an operator with a 1 s deadline (a frozen process answers nothing).
fn metrics_quick(port: u16) -> Option<String> {
    get_quick(port, "/metrics").filter(|(code, _)| *code == 200).map(|(_, b)| b)
}

/// GET on 127.0.0.1:`port` with a 1 s deadline: status code and body.
fn get_quick(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

fn leads(port: u16) -> Option<bool> {
    metric_value(&metrics_quick(port)?, "kubedrs_leader", &[]).map(|v| v == 1.0)
}

/// Passes so far (finished, failed, or put off while the caches are stale): the pass histogram's count, the
/// pass errors and the put-off passes. A put-off pass is a decision taken within 2 s, not a stall.
fn passes(port: u16) -> Option<f64> {
    let m = metrics_quick(port)?;
    Some(
        metric_value(&m, "kubedrs_pass_duration_seconds_count", &[]).unwrap_or(0.0)
            + metric_value(&m, "kubedrs_pass_errors_total", &[]).unwrap_or(0.0)
            + metric_value(&m, "kubedrs_passes_put_off_total", &[]).unwrap_or(0.0),
    )
}

/// The pool and `n` VMs (4 GiB, placed by kubedrs: start the operator, then wait with `all_running`), the
/// emulator copying at `rate` MiB/s.
async fn setup(s: &mut Scenario, n: usize, rate: &str) -> anyhow::Result<()> {
    s.start_emulator(&["--migration-rate", rate, "--phase-step-ms", "100"])?;
    s.create_pool(json!({})).await?;
    for i in 0..n {
        s.create_vm(&vm(&format!("vm-{i:02}")).placed_by_kubedrs()).await?;
    }
    Ok(())
}

/// The pool node with the most VMs.
fn busiest(p: &Placement, pool_nodes: &[String]) -> anyhow::Result<String> {
    per_node(p, pool_nodes)
        .into_iter()
        .max_by_key(|(n, c)| (*c, std::cmp::Reverse(n.clone())))
        .map(|(n, _)| n)
        .context("no node")
}

/// The node's maintenance state, and how many running VMIs are still on it.
async fn maintenance_state(s: &Scenario, node: &str) -> anyhow::Result<(String, usize)> {
    let n = s.node(node).await?;
    let state = n.annotations().get(MAINTENANCE_STATE).cloned().unwrap_or_default();
    let left = s.placement().await?.values().filter(|x| x.as_str() == node).count();
    Ok((state, left))
}

/// Waits until `node` is `InMaintenance` and empty.
async fn evacuated(s: &Scenario, node: &str, timeout: Duration) -> anyhow::Result<()> {
    eventually(&format!("{node} InMaintenance and empty"), timeout, || async move {
        let (state, left) = maintenance_state(s, node).await?;
        Ok(if state == "InMaintenance" && left == 0 { Ok(()) } else { Err(format!("state={state:?} left={left}")) })
    })
    .await
}

/// Waits until a migration of the namespace is `Running`; returns it.
async fn a_migration_running(s: &Scenario, timeout: Duration) -> anyhow::Result<Value> {
    eventually("a migration Running", timeout, || async {
        let ms = s.list_vmims().await?;
        Ok(ms
            .iter()
            .find(|m| str_at(m, &["status", "phase"]) == Some("Running"))
            .cloned()
            .ok_or_else(|| format!("{} migrations, none Running", ms.len())))
    })
    .await
}

/// Unfinished migrations now.
async fn unfinished(s: &Scenario) -> usize {
    s.list_vmims()
        .await
        .map(|ms| {
            ms.iter().filter(|m| !matches!(str_at(m, &["status", "phase"]), Some("Succeeded" | "Failed"))).count()
        })
        .unwrap_or(0)
}

/// After a control-plane fault: every component of the cluster runs again (restarting any that exited, as
/// their Deployment or systemd would); returns the ones restarted.
fn restart_exited_components() -> Vec<String> {
    let mut restarted = Vec::new();
    for name in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "metrics-server",
        "virt-api",
        "virt-controller",
    ] {
        let c = Component::new(name);
        if c.pid().is_err() && c.start().is_ok() {
            restarted.push(name.to_string());
        }
    }
    restarted
}

// (a) The operator killed every 5-15 s

/// (a) kubedrs SIGKILLed every 5-15 s (seeded) for `E2E_FAULT_SECS` while maintenance moves from node to
/// node (each node evacuated, then released and refilled by balancing), restarted at once after each kill.
#[tokio::test]
async fn a_operator_killed_every_5_to_15s() -> anyhow::Result<()> {
    let pool_nodes = nodes(0..4);
    let mut s = Scenario::start("killloop", &refs(&pool_nodes)).await?;
    let r = killloop(&mut s, &pool_nodes).await;
    s.conclude(r).await
}

async fn killloop(s: &mut Scenario, pool_nodes: &[String]) -> anyhow::Result<()> {
    let secs = knob("E2E_FAULT_SECS", 180);
    let seed = knob("E2E_FAULT_SEED", 13);
    // 4 GiB at 512 MiB/s: 8 s of copy, so that kills land mid-flight.
    setup(s, 16, "512").await?;
    let (mut op, _) = s.start_operator("0", &[])?;
    let placement = s.all_running(16, 3 * MIN).await?;
    let inv = Invariants::start(&s.client, &s.ns, &s.pool, Limits::default()).await?;
    let mut out = Outcome::default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<String> = pool_nodes.to_vec();
    let first = busiest(&placement, pool_nodes)?;
    order.retain(|n| *n != first);
    order.insert(0, first);
    let mut turn = 0usize;
    let mut current = order[0].clone();
    s.annotate_node(&current, MAINTENANCE, Some("true")).await?;
    eprintln!("  maintenance on {current}; killing kubedrs every 5-15 s for {secs} s (seed {seed})");
    let start = Instant::now();
    let (mut kills, mut mid_flight, mut rotations) = (0usize, 0usize, 0usize);
    let mut restarts = 0usize;
    while start.elapsed() < Duration::from_secs(secs) {
        // The fault's pace, not a synchronisation: the next kill comes 5-15 s later.
        let wait = Duration::from_millis(rng.random_range(5_000..=15_000));
        let until = Instant::now() + wait;
        while Instant::now() < until {
            // Maintenance moves on once the node is empty: off here (balancing refills it), on the next.
            if let Ok((state, 0)) = maintenance_state(s, &current).await
                && state == "InMaintenance"
            {
                s.annotate_node(&current, MAINTENANCE, None).await?;
                turn += 1;
                rotations += 1;
                current = order[turn % order.len()].clone();
                s.annotate_node(&current, MAINTENANCE, Some("true")).await?;
                eprintln!("  maintenance moves to {current}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let open = unfinished(s).await;
        s.children[op].kill();
        kills += 1;
        if open > 0 {
            mid_flight += 1;
        }
        eprintln!("  SIGKILL #{kills} at {:.0}s with {open} migration(s) unfinished", start.elapsed().as_secs_f64());
        restarts += 1;
        op = s.start_operator(&format!("{restarts}"), &[])?.0;
        inv.mark(&format!("kill {kills}"));
    }
    eprintln!("  kills over; the last maintenance is {current}");
    let settle = evacuated(s, &current, 4 * MIN).await;
    out.check(settle.is_ok(), format!("{current} evacuated after the kills: {settle:?}"));
    let settled = s.migrations_settled(2 * MIN).await;
    out.check(settled.is_ok(), format!("migrations settle: {:?}", settled.err()));
    let report = inv.finish(Some(&current)).await?;
    let kubedrs_migs = report.record.migrations.values().filter(|m| m.by_kubedrs).count();
    out.check(report.record.polls_with_in_flight > 0, "no kubedrs migration was ever in flight");
    out.note(format!(
        "{kills} kills ({mid_flight} with migrations unfinished), {rotations} maintenance moves, {kubedrs_migs} kubedrs migrations, peaks {}/{}/{} (pool/out/in)",
        report.record.peak_in_flight, report.record.peak_out, report.record.peak_in
    ));
    let st: Vec<f64> = report.recoveries.iter().filter_map(|r| r.to_status).map(|d| d.as_secs_f64()).collect();
    let recovery = if st.is_empty() {
        "-".to_string()
    } else {
        format!(
            "status after restart: mean {:.1}s, max {:.1}s",
            st.iter().sum::<f64>() / st.len() as f64,
            st.iter().copied().fold(0.0, f64::max)
        )
    };
    out.conclude("operator SIGKILLed every 5-15 s", &report, &recovery)
}

// (b, c) kube-apiserver and etcd restarted mid-evacuation

/// (b) kube-apiserver stopped for `E2E_FAULT_DOWN_SECS` while evacuation migrations run, then started
/// again: kubedrs (not restarted) finishes the evacuation.
#[tokio::test]
async fn b_apiserver_restarted_mid_evacuation() -> anyhow::Result<()> {
    control_plane_restart("apiserver", "kube-apiserver").await
}

/// (c) etcd stopped for `E2E_FAULT_DOWN_SECS` while evacuation migrations run, then started again.
#[tokio::test]
async fn c_etcd_restarted_mid_evacuation() -> anyhow::Result<()> {
    control_plane_restart("etcd", "etcd").await
}

async fn control_plane_restart(name: &str, component: &str) -> anyhow::Result<()> {
    let pool_nodes = nodes(0..3);
    let mut s = Scenario::start(name, &refs(&pool_nodes)).await?;
    let r = restart_body(&mut s, &pool_nodes, component).await;
    s.conclude(r).await
}

async fn restart_body(s: &mut Scenario, pool_nodes: &[String], component: &str) -> anyhow::Result<()> {
    let down = Duration::from_secs(knob("E2E_FAULT_DOWN_SECS", 20));
    // 4 GiB at 128 MiB/s: 32 s of copy per migration; 2 leave a node at once, so the evacuation outlasts
    // the outage.
    setup(s, 9, "128").await?;
    let (op, _) = s.start_operator("0", &[])?;
    let p = s.all_running(9, 3 * MIN).await?;
    let inv = Invariants::start(&s.client, &s.ns, &s.pool, Limits::default()).await?;
    let mut out = Outcome::default();
    let target = busiest(&p, pool_nodes)?;
    s.annotate_node(&target, MAINTENANCE, Some("true")).await?;
    a_migration_running(s, 2 * MIN).await?;
    let c = Component::new(component);
    eprintln!("  stopping {component} for {down:?} with {} migration(s) unfinished", unfinished(s).await);
    c.stop(Duration::from_secs(10))?;
    // The outage's length is the fault itself.
    tokio::time::sleep(down).await;
    c.start()?;
    let back = api_ready(&s.client, 2 * MIN).await?;
    inv.mark(&format!("{component} back"));
    let others = restart_exited_components();
    if !others.is_empty() {
        out.note(format!("restarted after the outage (exited): {others:?}"));
    }
    out.note(format!("API ready {:.1}s after the start", back.as_secs_f64()));
    let done = evacuated(s, &target, 4 * MIN).await;
    out.check(done.is_ok(), format!("{target} evacuated after the outage: {done:?}"));
    let settled = s.migrations_settled(2 * MIN).await;
    out.check(settled.is_ok(), format!("migrations settle: {:?}", settled.err()));
    out.check(s.children[op].is_running(), "kubedrs exited during the outage (it must recover by itself)");
    let report = inv.finish(Some(&target)).await?;
    let rc = report.recoveries.first().cloned();
    let to_mig = rc.as_ref().and_then(|r| r.to_migration);
    let to_status = rc.as_ref().and_then(|r| r.to_status);
    let recovery = format!("next migration {}, pool status {}", secs(to_mig), secs(to_status));
    out.conclude(&format!("{component} down {}s mid-evacuation", down.as_secs()), &report, &recovery)
}

// (d, e) Replicas: the leader killed, frozen, cut off

/// (d) Two replicas (`--leader-elect`), each talking to the API server through its own proxy: the leader
/// is SIGKILLed, then frozen (SIGSTOP past the lease), then cut off from the API server; each time another
/// takes over and never two lead at once; a cut-off leader stops leading before its lease expires.
#[tokio::test]
async fn d_two_replicas_leader_killed_frozen_cut_off() -> anyhow::Result<()> {
    replicas("replicas2", 2).await
}

/// (e) The same with three replicas.
#[tokio::test]
async fn e_three_replicas_leader_killed_frozen_cut_off() -> anyhow::Result<()> {
    replicas("replicas3", 3).await
}

async fn replicas(name: &str, n: usize) -> anyhow::Result<()> {
    let pool_nodes = nodes(0..4);
    let mut s = Scenario::start(name, &refs(&pool_nodes)).await?;
    let r = replicas_body(&mut s, &pool_nodes, n).await;
    s.conclude(r).await
}

struct Replica {
    idx: usize,
    port: u16,
    proxy: ApiProxy,
}

async fn start_replica(s: &mut Scenario, id: &str) -> anyhow::Result<Replica> {
    let proxy = ApiProxy::start(&format!("{}-proxy-{id}", s.name)).await?;
    let (idx, port) =
        s.start_operator_env(id, &["--leader-elect"], &[("KUBECONFIG", proxy.kubeconfig.display().to_string())])?;
    Ok(Replica { idx, port, proxy })
}

/// Polls the replicas' `kubedrs_leader` every 250 ms until one other than `old` leads (returns its index in
/// `rs` and the time); records in `inv` any poll where two replicas lead at once.
async fn takeover(
    rs: &[Replica],
    old: Option<usize>,
    inv: &Invariants,
    phase: &str,
    timeout: Duration,
    old_stopped: &mut Option<Duration>,
) -> Option<(usize, Duration)> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let now: Vec<Option<bool>> = rs.iter().map(|r| leads(r.port)).collect();
        if let Some(o) = old
            && now[o] == Some(false)
            && old_stopped.is_none()
        {
            *old_stopped = Some(start.elapsed());
        }
        let leaders: Vec<usize> = (0..rs.len()).filter(|i| now[*i] == Some(true)).collect();
        if leaders.len() > 1 {
            inv.violation(&format!("replicas {leaders:?} lead at once ({phase})"));
        }
        if let Some(l) = leaders.iter().find(|l| Some(**l) != old) {
            return Some((*l, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Watches the replicas for `period`: two leading at once is a violation.
async fn never_two_leaders(rs: &[Replica], inv: &Invariants, phase: &str, period: Duration) {
    let start = Instant::now();
    while start.elapsed() < period {
        let leaders: Vec<usize> = (0..rs.len()).filter(|i| leads(rs[*i].port) == Some(true)).collect();
        if leaders.len() > 1 {
            inv.violation(&format!("replicas {leaders:?} lead at once ({phase})"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn acted(c: &Child) -> usize {
    c.log_text().lines().filter(|l| l.contains("migration created") || l.contains("pod bound")).count()
}

async fn replicas_body(s: &mut Scenario, pool_nodes: &[String], n: usize) -> anyhow::Result<()> {
    setup(s, 12, "256").await?;
    let mut rs = Vec::new();
    for i in 0..n {
        rs.push(start_replica(s, &format!("r{i}")).await?);
    }
    let p = s.all_running(12, 3 * MIN).await?;
    let inv = Invariants::start(&s.client, &s.ns, &s.pool, Limits::default()).await?;
    let mut out = Outcome::default();
    let (mut leader, _) = takeover(&rs, None, &inv, "start", MIN, &mut None).await.context("no replica leads")?;
    eprintln!("  leader: {}", s.children[rs[leader].idx].name);
    let mut order: Vec<String> = pool_nodes.to_vec();
    let first = busiest(&p, pool_nodes)?;
    order.retain(|x| *x != first);
    order.insert(0, first);
    let mut times = Vec::new();
    let mut restarted = 0usize;
    for (round, fault) in ["killed", "frozen", "cut off"].iter().enumerate() {
        let node = order[round % order.len()].clone();
        s.annotate_node(&node, MAINTENANCE, Some("true")).await?;
        a_migration_running(s, 2 * MIN).await?;
        let old = leader;
        let old_name = s.children[rs[old].idx].name.clone();
        eprintln!("  leader {old_name} {fault}");
        let t0 = Instant::now();
        match *fault {
            "killed" => s.children[rs[old].idx].kill(),
            "frozen" => send_signal(s.children[rs[old].idx].pid(), "STOP")?,
            _ => rs[old].proxy.set(Mode::Cut),
        }
        // When the old leader says it stopped (its gauge follows its fence), watched from the fault on.
        let mut old_stopped = None;
        let took = takeover(
            &rs,
            Some(old),
            &inv,
            &format!("leader {fault}"),
            2 * LEASE + Duration::from_secs(30),
            &mut old_stopped,
        )
        .await;
        match took {
            Some((l, d)) => {
                eprintln!("  {} took over after {:.1}s", s.children[rs[l].idx].name, d.as_secs_f64());
                times.push(format!("{fault} {:.1}s", d.as_secs_f64()));
                leader = l;
            }
            None => {
                out.check(false, format!("nobody took over from the {fault} leader"));
                times.push(format!("{fault} -"));
            }
        }
        inv.mark(&format!("leader {fault}"));
        match *fault {
            "killed" => {
                // Its Deployment would start it again.
                restarted += 1;
                let r = start_replica(s, &format!("r{old}-{restarted}")).await?;
                rs[old] = r;
            }
            "frozen" => {
                // Past the lease: it wakes up believing it leads; it must write nothing from then on.
                let wake = LEASE + Duration::from_secs(10);
                if t0.elapsed() < wake {
                    tokio::time::sleep(wake - t0.elapsed()).await;
                }
                let before = acted(&s.children[rs[old].idx]);
                send_signal(s.children[rs[old].idx].pid(), "CONT")?;
                never_two_leaders(&rs, &inv, "the frozen leader woke up", Duration::from_secs(10)).await;
                let after = acted(&s.children[rs[old].idx]);
                out.check(after == before, format!("{old_name} acted {} time(s) after waking", after - before));
            }
            _ => {
                // The cut-off leader must have stopped leading by the time its lease expired.
                let mut fenced_at = old_stopped;
                while t0.elapsed() < 2 * LEASE {
                    if leads(rs[old].port) == Some(false) && fenced_at.is_none() {
                        fenced_at = Some(t0.elapsed());
                    }
                    never_two_leaders(&rs, &inv, "leader cut off", Duration::from_millis(500)).await;
                }
                out.check(
                    fenced_at.is_some_and(|d| d <= LEASE),
                    format!(
                        "the cut-off leader {old_name} stops leading before its lease ({}s) expires (lease fencing): stopped after {}",
                        LEASE.as_secs(),
                        secs(fenced_at)
                    ),
                );
                rs[old].proxy.set(Mode::Pass);
                never_two_leaders(&rs, &inv, "the cut-off leader reconnected", Duration::from_secs(10)).await;
            }
        }
        let done = evacuated(s, &node, 4 * MIN).await;
        out.check(done.is_ok(), format!("{node} evacuated after the leader was {fault}: {done:?}"));
        s.migrations_settled(2 * MIN).await?;
        if round + 1 < 3 {
            s.annotate_node(&node, MAINTENANCE, None).await?;
        }
    }
    let last = order[2 % order.len()].clone();
    let report = inv.finish(Some(&last)).await?;
    let followers_acting: Vec<String> = rs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, r)| format!("{}={}", s.children[r.idx].name, acted(&s.children[r.idx])))
        .collect();
    out.note(format!("acted per replica (log lines) besides the last leader: {followers_acting:?}"));
    out.conclude(
        &format!("{n} replicas: leader killed, frozen, cut off"),
        &report,
        &format!("takeover {}", times.join(", ")),
    )
}

// (f, g) A node going NotReady while a migration runs

/// (f) The source node of a running migration goes NotReady (its heartbeat stops and the kubelet reports
/// NotReady) for 30 s during its maintenance.
#[tokio::test]
async fn f_source_node_not_ready_mid_migration() -> anyhow::Result<()> {
    not_ready("notreadysrc", true).await
}

/// (g) The target node of a running migration goes NotReady for 30 s: no migration is sent there while it
/// is NotReady.
#[tokio::test]
async fn g_target_node_not_ready_mid_migration() -> anyhow::Result<()> {
    not_ready("notreadydst", false).await
}

async fn not_ready(name: &str, source: bool) -> anyhow::Result<()> {
    let pool_nodes = nodes(0..3);
    let mut s = Scenario::start(name, &refs(&pool_nodes)).await?;
    let r = not_ready_body(&mut s, &pool_nodes, source).await;
    s.conclude(r).await
}

/// Makes `node` NotReady as a dead kubelet would look: KWOK stops its heartbeat, and its Ready condition
/// turns False (KWOK would set it True again while it manages the node).
async fn make_not_ready(s: &Scenario, node: &str) -> anyhow::Result<()> {
    node_heartbeat(&s.client, node, true).await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
        "message": "e2e: the node's heartbeat stopped", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    s.nodes_api().patch_status(node, &PatchParams::default(), &Patch::Strategic(patch)).await?;
    Ok(())
}

async fn not_ready_body(s: &mut Scenario, pool_nodes: &[String], source: bool) -> anyhow::Result<()> {
    // 4 GiB at 96 MiB/s: ~43 s of copy, longer than the NotReady window.
    setup(s, 9, "96").await?;
    s.start_operator("0", &[])?;
    let p = s.all_running(9, 3 * MIN).await?;
    let inv = Invariants::start(&s.client, &s.ns, &s.pool, Limits::default()).await?;
    let mut out = Outcome::default();
    let maint = busiest(&p, pool_nodes)?;
    s.annotate_node(&maint, MAINTENANCE, Some("true")).await?;
    let m = a_migration_running(s, 2 * MIN).await?;
    let victim = if source {
        maint.clone()
    } else {
        m["metadata"]["annotations"]["kubedrs.io/target-node"]
            .as_str()
            .or_else(|| m["spec"]["addedNodeSelector"]["kubernetes.io/hostname"].as_str())
            .context("the migration names no target")?
            .to_string()
    };
    eprintln!(
        "  {} node {victim} goes NotReady during {}",
        if source { "source" } else { "target" },
        str_at(&m, &["metadata", "name"]).unwrap_or_default()
    );
    make_not_ready(s, &victim).await?;
    let t0 = Instant::now();
    // The pool must say so while it lasts (a condition or an Event naming the node).
    let reported = eventually(&format!("the pool reports {victim} NotReady"), Duration::from_secs(30), || async {
        let st = s.pool_status().await?;
        let in_conditions = st["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["message"].as_str().is_some_and(|m| m.contains(&victim))));
        let events: kube::Api<Event> = kube::Api::all(s.client.clone());
        let in_events = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={}", s.pool)))
            .await?
            .items
            .iter()
            .any(|e| e.message.as_deref().is_some_and(|m| m.contains(&victim)));
        Ok(if in_conditions || in_events { Ok(()) } else { Err(format!("conditions: {}", st["conditions"])) })
    })
    .await;
    out.check(
        reported.is_ok(),
        format!("the pool reports its NotReady node {victim} (condition or Event): {:?}", reported.err()),
    );
    // The outage lasts 30 s in all: the fault's length.
    if t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(30) - t0.elapsed()).await;
    }
    node_heartbeat(&s.client, &victim, false).await?;
    eventually(&format!("{victim} Ready again"), MIN, || async {
        let n: Node = s.node(&victim).await?;
        Ok(if node_ready(&n) { Ok(()) } else { Err("NotReady".into()) })
    })
    .await?;
    inv.mark(&format!("{victim} Ready again"));
    let done = evacuated(s, &maint, 4 * MIN).await;
    out.check(done.is_ok(), format!("{maint} evacuated: {done:?}"));
    let settled = s.migrations_settled(2 * MIN).await;
    out.check(settled.is_ok(), format!("migrations settle: {:?}", settled.err()));
    let report = inv.finish(Some(&maint)).await?;
    let to_victim = report.record.migrations.values().filter(|m| m.target.as_deref() == Some(victim.as_str())).count();
    out.note(format!("{} migrations, {to_victim} to {victim}", report.record.migrations.len()));
    let rc = report.recoveries.first().cloned();
    let recovery = format!(
        "after Ready: next migration {}, pool status {}",
        secs(rc.as_ref().and_then(|r| r.to_migration)),
        secs(rc.as_ref().and_then(|r| r.to_status))
    );
    out.conclude(
        &format!("{} node NotReady 30s mid-migration", if source { "source" } else { "target" }),
        &report,
        &recovery,
    )
}

// (h) The API server throttling, slow, unreachable

/// (h) Between kubedrs and the API server, a proxy answers 429 for 30 s, then delays every request by 2 s
/// for 30 s, then cuts kubedrs off for 20 s, during an evacuation: kubedrs stays live, its passes go on
/// (the pass counter, put-off passes included, moves at least every 25 s: the pool's 10 s interval and a
/// slowed pass), `/readyz` turns false while it cannot reach the API
/// server and true within seconds after, and the evacuation ends.
#[tokio::test]
async fn h_api_throttled_slow_and_unreachable() -> anyhow::Result<()> {
    let pool_nodes = nodes(0..3);
    let mut s = Scenario::start("throttle", &refs(&pool_nodes)).await?;
    let r = throttle(&mut s, &pool_nodes).await;
    s.conclude(r).await
}

/// Watches the operator on `port` for `period`: `/healthz` answers, and the pass counter moves at least
/// every `stall`; returns the longest gap between two pass counts and whether `/readyz` was ever not 200.
async fn watch_operator(port: u16, period: Duration, out: &mut Outcome, what: &str) -> (Duration, bool) {
    let start = Instant::now();
    let (mut last, mut last_change, mut gap) = (passes(port), Instant::now(), Duration::ZERO);
    let mut unready = false;
    while start.elapsed() < period {
        let live = get_quick(port, "/healthz").is_some_and(|(c, _)| c == 200);
        out.check(live, format!("kubedrs /healthz answers during {what}"));
        if get_quick(port, "/readyz").is_some_and(|(c, _)| c != 200) {
            unready = true;
        }
        let now = passes(port);
        if now.is_some() && now != last {
            last = now;
            last_change = Instant::now();
        }
        gap = gap.max(last_change.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (gap, unready)
}

async fn throttle(s: &mut Scenario, pool_nodes: &[String]) -> anyhow::Result<()> {
    setup(s, 9, "128").await?;
    let proxy = ApiProxy::start(&format!("{}-proxy", s.name)).await?;
    let (op, port) = s.start_operator_env("0", &[], &[("KUBECONFIG", proxy.kubeconfig.display().to_string())])?;
    let p = s.all_running(9, 3 * MIN).await?;
    let inv = Invariants::start(&s.client, &s.ns, &s.pool, Limits::default()).await?;
    let mut out = Outcome::default();
    eventually("kubedrs ready", MIN, || async {
        Ok(if get_quick(port, "/readyz").is_some_and(|(c, _)| c == 200) { Ok(()) } else { Err("not ready".into()) })
    })
    .await?;
    let maint = busiest(&p, pool_nodes)?;
    s.annotate_node(&maint, MAINTENANCE, Some("true")).await?;
    a_migration_running(s, 2 * MIN).await?;
    // The pool's interval is 10 s; a pass under a 2 s delay per request takes a few seconds more.
    let stall = Duration::from_secs(25);
    let mut gaps = Vec::new();
    for (mode, what, period) in [
        (Mode::Throttle, "429 for every request", Duration::from_secs(30)),
        (Mode::Delay(Duration::from_secs(2)), "2 s delay on every request", Duration::from_secs(30)),
    ] {
        proxy.set(mode);
        let (gap, _) = watch_operator(port, period, &mut out, what).await;
        proxy.set(Mode::Pass);
        out.check(
            gap <= stall,
            format!("passes go on during {what}: longest gap {:.1}s (max {}s)", gap.as_secs_f64(), stall.as_secs()),
        );
        gaps.push(format!("{what}: {:.1}s", gap.as_secs_f64()));
        inv.mark(what);
    }
    proxy.set(Mode::Cut);
    let (_, unready) = watch_operator(port, Duration::from_secs(20), &mut out, "the cut").await;
    out.check(unready, "/readyz turns false while kubedrs cannot reach the API server");
    proxy.set(Mode::Pass);
    inv.mark("cut healed");
    let t = Instant::now();
    let ready = eventually("kubedrs /readyz true after the cut", MIN, || async {
        Ok(if get_quick(port, "/readyz").is_some_and(|(c, _)| c == 200) { Ok(()) } else { Err("not ready".into()) })
    })
    .await;
    let ready_after = t.elapsed();
    out.check(
        ready.is_ok() && ready_after <= Duration::from_secs(10),
        format!("/readyz true within 10 s of the API server's return: {:.1}s", ready_after.as_secs_f64()),
    );
    let done = evacuated(s, &maint, 4 * MIN).await;
    out.check(done.is_ok(), format!("{maint} evacuated: {done:?}"));
    let settled = s.migrations_settled(2 * MIN).await;
    out.check(settled.is_ok(), format!("migrations settle: {:?}", settled.err()));
    out.check(s.children[op].is_running(), "kubedrs exited");
    let (fwd, throttled, cut) = proxy.counts();
    out.note(format!("pass gaps {gaps:?}; proxy: {fwd} forwarded, {throttled} answered 429, {cut} cut"));
    let report = inv.finish(Some(&maint)).await?;
    let healed = report.recoveries.iter().find(|r| r.label == "cut healed").cloned();
    let recovery =
        format!("readyz {:.1}s, pool status {}", ready_after.as_secs_f64(), secs(healed.and_then(|r| r.to_status)));
    out.conclude("API server 429 / slow / unreachable", &report, &recovery)
}
