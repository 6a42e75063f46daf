//! (p) Pools shared out across replicas: 3 operators with `--leader-elect`, 6 HostPools. Every pool gets
//! exactly one owner (2 per replica); a SIGKILLed replica's pools are taken over within the lease time and
//! nothing else moves; a maintenance on a pool the new holder took completes; a replica frozen (SIGSTOP)
//! past its lease writes nothing when it wakes until it takes pools again. Watches record every Lease
//! holder, every `status.owner` and every migration throughout: never two owners at once, never two
//! unfinished migrations of one VMI.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use kubedrs_e2e::harness::*;
use kubedrs_e2e::kubevirt::str_at;
use serde_json::json;

use super::{EMULATOR, MIN, in_maintenance_and_empty, nodes, refs};

/// The operator's lease duration (`kubedrs_operator::leader::LEASE`) and tick.
const LEASE: Duration = Duration::from_secs(15);
const TICK: Duration = Duration::from_secs(2);

/// What the watches saw, with the time since the scenario's start.
#[derive(Default)]
struct History {
    /// `(t, pool, holder)` at every change of a pool Lease's holder.
    holders: Vec<(Duration, String, Option<String>)>,
    /// `(t, pool, owner)` at every change of a HostPool's `status.owner`.
    owners: Vec<(Duration, String, Option<String>)>,
    /// VMIs seen with two unfinished migrations at once.
    doubled: Vec<String>,
}

type Shared = Arc<Mutex<History>>;

fn lock(h: &Shared) -> std::sync::MutexGuard<'_, History> {
    h.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the watches; they stop when the returned handles are aborted.
fn watch_all(s: &Scenario, pools: &[String], t0: Instant, h: &Shared) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.ns);
    let names: BTreeMap<String, String> = pools.iter().map(|p| (format!("kubedrs-pool-{p}"), p.clone())).collect();
    let hl = h.clone();
    tasks.push(tokio::spawn(async move {
        let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut w = watcher(leases, watcher::Config::default()).boxed();
        while let Some(ev) = w.next().await {
            if let Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) = ev {
                let Some(pool) = names.get(&l.name_any()) else { continue };
                let holder = l.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty());
                if last.get(pool) != Some(&holder) {
                    last.insert(pool.clone(), holder.clone());
                    lock(&hl).holders.push((t0.elapsed(), pool.clone(), holder));
                }
            }
        }
    }));
    let ho = h.clone();
    let hps = s.pools();
    tasks.push(tokio::spawn(async move {
        let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut w = watcher(hps, watcher::Config::default()).boxed();
        while let Some(ev) = w.next().await {
            if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev {
                let owner = p.data["status"]["owner"].as_str().map(String::from);
                let name = p.name_any();
                if last.get(&name) != Some(&owner) {
                    last.insert(name.clone(), owner.clone());
                    lock(&ho).owners.push((t0.elapsed(), name, owner));
                }
            }
        }
    }));
    let hm = h.clone();
    let vmims = s.vmims();
    tasks.push(tokio::spawn(async move {
        let mut open: BTreeMap<String, (String, bool)> = BTreeMap::new();
        let mut w = watcher(vmims, watcher::Config::default()).boxed();
        while let Some(ev) = w.next().await {
            match ev {
                Ok(watcher::Event::Apply(m) | watcher::Event::InitApply(m)) => {
                    let v = to_json(m);
                    let unfinished = !matches!(str_at(&v, &["status", "phase"]), Some("Succeeded" | "Failed"));
                    let vmi = str_at(&v, &["spec", "vmiName"]).unwrap_or_default().to_string();
                    open.insert(str_at(&v, &["metadata", "name"]).unwrap_or_default().into(), (vmi, unfinished));
                }
                Ok(watcher::Event::Delete(m)) => {
                    open.remove(&m.name_any());
                }
                _ => continue,
            }
            let mut per: BTreeMap<&str, usize> = BTreeMap::new();
            for (vmi, unfinished) in open.values() {
                if *unfinished {
                    *per.entry(vmi.as_str()).or_default() += 1;
                }
            }
            for (vmi, n) in per {
                if n > 1 {
                    lock(&hm).doubled.push(format!("{vmi} ({n} unfinished)"));
                }
            }
        }
    }));
    tasks
}

/// Pool -> holder of its Lease (None: free).
async fn holders(s: &Scenario, pools: &[String]) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.ns);
    let all: BTreeMap<String, Lease> =
        leases.list(&ListParams::default()).await?.items.into_iter().map(|l| (l.name_any(), l)).collect();
    Ok(pools
        .iter()
        .map(|p| {
            let h = all
                .get(&format!("kubedrs-pool-{p}"))
                .and_then(|l| l.spec.clone())
                .and_then(|s| s.holder_identity)
                .filter(|h| !h.is_empty());
            (p.clone(), h)
        })
        .collect())
}

fn count(h: &BTreeMap<String, Option<String>>) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for x in h.values().flatten() {
        *c.entry(x.clone()).or_default() += 1;
    }
    c
}

/// Waits until every pool is held, each replica of `replicas` holding `each`, and every pool's
/// `status.owner` names its holder; returns the holders.
async fn settled(
    s: &Scenario,
    pools: &[String],
    replicas: &BTreeSet<String>,
    each: usize,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, String>> {
    eventually(&format!("{} pools, {each} per replica, status.owner = holder", pools.len()), timeout, || async {
        let h = holders(s, pools).await?;
        let c = count(&h);
        let want: BTreeMap<String, usize> = replicas.iter().map(|r| (r.clone(), each)).collect();
        if h.values().any(Option::is_none) || c != want {
            return Ok(Err(format!("holders {h:?}")));
        }
        let api = s.pools();
        for (p, holder) in &h {
            let owner = api.get(p).await?.data["status"]["owner"].as_str().map(String::from);
            if owner != *holder {
                return Ok(Err(format!("pool {p}: status.owner {owner:?}, Lease holder {holder:?}")));
            }
        }
        Ok(Ok(h.into_iter().filter_map(|(p, h)| Some((p, h?))).collect()))
    })
    .await
}

/// Lines of a replica's log that are writes for a pool: done, or sent and refused by the API server (a
/// write the fence stopped never left the process).
fn writes(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            ["migration created", "pod bound", "node patched", "migration refused", "cannot patch", "cannot bind"]
                .iter()
                .any(|w| l.contains(w))
                && !l.contains("fenced")
        })
        .collect()
}

#[tokio::test]
async fn p_three_replicas_share_six_pools() -> anyhow::Result<()> {
    let main_nodes = nodes(0..2);
    let mut s = Scenario::start("shards", &refs(&main_nodes)).await?;
    let r = shards(&mut s).await;
    s.conclude(r).await
}

async fn shards(s: &mut Scenario) -> anyhow::Result<()> {
    let t0 = Instant::now();
    s.start_emulator(EMULATOR)?;
    // Six pools: the scenario's own (nodes 0-1, its namespace's VMs), two more of two nodes, three empty.
    let pools: Vec<String> = std::iter::once(s.pool.clone()).chain((1..6).map(|i| format!("shards-{i}"))).collect();
    for (i, p) in pools.iter().enumerate().skip(1) {
        if i <= 2 {
            for n in nodes(2 * i..2 * i + 2) {
                let patch = json!({"metadata": {"labels": {POOL_LABEL: p}}});
                s.nodes_api().patch(&n, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
        }
        let obj = json!({"apiVersion": "kubedrs.io/v1alpha1", "kind": "HostPool", "metadata": {"name": p},
                         "spec": {"nodeSelector": {"matchLabels": {POOL_LABEL: p}}, "interval": "10s"}});
        s.pools().create(&PostParams::default(), &serde_json::from_value::<DynamicObject>(obj)?).await?;
    }
    s.create_pool(json!({"migrationThreshold": 1})).await?;
    let ids = ["a", "b", "c"];
    let mut started = BTreeMap::new();
    for id in ids {
        let (i, port) = s.start_operator(id, &["--leader-elect"])?;
        started.insert(format!("{}-{id}", s.name), (i, port));
    }
    let replicas: BTreeSet<String> = started.keys().cloned().collect();
    for i in 0..4 {
        s.create_vm(&vm(&format!("vm-{i}")).placed_by_kubedrs()).await?;
    }
    s.all_running(4, 2 * MIN).await?;

    let first = settled(s, &pools, &replicas, 2, 2 * MIN).await?;
    show("owners", &first);
    for (id, (_, port)) in &started {
        let owned = metric_value(&http_get(*port, "/metrics")?, "kubedrs_pools_owned", &[]);
        ensure!(owned == Some(2.0), "{id}: kubedrs_pools_owned {owned:?}");
    }
    let history: Shared = Arc::default();
    let watches = watch_all(s, &pools, t0, &history);
    // The watches' first lists are no changes: wait for them before anything changes.
    eventually("watches listed every pool", MIN, || async {
        let h = lock(&history);
        let seen = |v: &Vec<(Duration, String, Option<String>)>| v.iter().map(|x| x.1.clone()).collect::<BTreeSet<_>>();
        let n = (seen(&h.holders).len(), seen(&h.owners).len());
        Ok(if n == (pools.len(), pools.len()) { Ok(()) } else { Err(format!("{n:?}")) })
    })
    .await?;
    let result = kill_and_freeze(s, &pools, &started, &first, t0, &history).await;
    for w in &watches {
        w.abort();
    }
    result?;
    let h = lock(&history);
    ensure!(h.doubled.is_empty(), "VMIs with two unfinished migrations: {:?}", h.doubled);
    Ok(())
}

async fn kill_and_freeze(
    s: &mut Scenario,
    pools: &[String],
    started: &BTreeMap<String, (usize, u16)>,
    first: &BTreeMap<String, String>,
    t0: Instant,
    history: &Shared,
) -> anyhow::Result<()> {
    let main = s.pool.clone();
    // SIGKILL the owner of the scenario's pool.
    let victim = first.get(&main).context("the main pool has no owner")?.clone();
    let theirs: Vec<String> = first.iter().filter(|(_, h)| **h == victim).map(|(p, _)| p.clone()).collect();
    let killed_at = t0.elapsed();
    eprintln!("  SIGKILL {victim} (pools {theirs:?})");
    s.children[started[&victim].0].kill();
    let kill = Instant::now();
    let sr: &Scenario = s;
    eventually("the dead replica's pools taken over", MIN, || async {
        let h = holders(sr, pools).await?;
        let left: Vec<&String> = theirs.iter().filter(|p| h[*p].as_ref().is_none_or(|x| *x == victim)).collect();
        Ok(if left.is_empty() { Ok(()) } else { Err(format!("still {victim}'s or free: {left:?}")) })
    })
    .await?;
    let takeover = kill.elapsed();
    eprintln!(
        "  takeover of {} pools in {:.1}s (lease {}s, tick {}s)",
        theirs.len(),
        takeover.as_secs_f64(),
        LEASE.as_secs(),
        TICK.as_secs()
    );
    ensure!(takeover <= LEASE + 3 * TICK, "takeover took {takeover:?}");
    let survivors: BTreeSet<String> = started.keys().filter(|r| **r != victim).cloned().collect();
    let after = settled(s, pools, &survivors, 3, MIN).await?;
    show("owners after the kill", &after);
    {
        let h = lock(history);
        for (p, was) in first {
            let changes: Vec<_> = h.holders.iter().filter(|(t, q, _)| q == p && *t > killed_at).collect();
            if *was == victim {
                ensure!(!changes.iter().any(|(_, _, x)| x.as_ref() == Some(&victim)), "pool {p} went back to {victim}");
            } else {
                ensure!(changes.is_empty(), "pool {p} of a survivor moved: {changes:?}");
            }
        }
        for (t, p, o) in h.owners.iter().filter(|(t, _, _)| *t > killed_at + LEASE) {
            ensure!(o.as_ref() != Some(&victim), "pool {p} shows the dead {victim} as owner at {t:?}");
        }
    }

    // A maintenance on the main pool, now the new holder's.
    let holder = after[&main].clone();
    let before = writes(&s.children[started[&holder].0].log_text()).len();
    s.annotate_node("kwok-node-0", MAINTENANCE, Some("true")).await?;
    in_maintenance_and_empty(s, "kwok-node-0", 2 * MIN).await?;
    s.migrations_settled(MIN).await?;
    let log = s.children[started[&holder].0].log_text();
    ensure!(writes(&log).len() > before, "the new holder {holder} did not act");
    for r in survivors.iter().filter(|r| **r != holder) {
        let theirs = s.children[started[r].0].log_text();
        let main_writes: Vec<&str> =
            writes(&theirs).into_iter().filter(|l| l.contains(&format!("pool={main} "))).collect();
        ensure!(main_writes.is_empty(), "{r} wrote for pool {main} it does not hold: {main_writes:?}");
    }
    s.all_running(4, MIN).await?;

    // Freeze the other survivor past its lease: the holder takes its pools; on waking it writes nothing
    // before it takes pools again (it must: two live replicas share six pools 3 and 3).
    let frozen = survivors.iter().find(|r| **r != holder).context("no second survivor")?.clone();
    let idx = started[&frozen].0;
    let its: Vec<String> = after.iter().filter(|(_, h)| **h == frozen).map(|(p, _)| p.clone()).collect();
    let pid = s.children[idx].pid().to_string();
    let offset = s.children[idx].log_text().len();
    eprintln!("  SIGSTOP {frozen} (pools {its:?})");
    Command::new("kill").args(["-STOP", &pid]).status()?;
    let stopped = Instant::now();
    let sr: &Scenario = s;
    let r = eventually("the frozen replica's pools taken over", MIN, || async {
        let h = holders(sr, pools).await?;
        Ok(if h.values().all(|x| x.as_ref() == Some(&holder)) { Ok(()) } else { Err(format!("{h:?}")) })
    })
    .await;
    let woke_at = t0.elapsed();
    Command::new("kill").args(["-CONT", &pid]).status()?;
    r?;
    eprintln!("  SIGCONT {frozen} after {:.1}s", stopped.elapsed().as_secs_f64());
    let back = settled(s, pools, &survivors, 3, MIN).await?;
    show("owners after the freeze", &back);
    let log = s.children[idx].log_text();
    let woke: &str = log.get(offset..).unwrap_or_default();
    let took = woke.find("took the pool").unwrap_or(woke.len());
    let early = writes(&woke[..took]);
    ensure!(early.is_empty(), "{frozen} wrote after waking, before taking pools again: {early:?}");
    let h = lock(history);
    let retaken: BTreeMap<&String, Duration> =
        h.holders.iter().filter(|(t, _, x)| *t > woke_at && x.as_ref() == Some(&frozen)).map(|(t, p, _)| (p, *t)).fold(
            BTreeMap::new(),
            |mut m, (p, t)| {
                m.entry(p).or_insert(t);
                m
            },
        );
    for (t, p, o) in h.owners.iter().filter(|(t, _, o)| *t > woke_at && o.as_ref() == Some(&frozen)) {
        let since = retaken.get(p).copied().unwrap_or(Duration::MAX);
        ensure!(*t >= since, "pool {p}: status.owner {o:?} at {t:?}, before {frozen} took it again at {since:?}");
    }
    let refused = woke.lines().filter(|l| l.contains("write refused by the fence")).count();
    eprintln!("  {frozen} after waking: {refused} write(s) refused by the fence, none sent before taking pools again");
    Ok(())
}
