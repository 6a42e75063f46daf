//! `kubedrs compare`: the same pools and workloads run under every policy side by side (kube-scheduler alone,
//! the descheduler's LowNodeUtilization as KubeVirt documents it, the real ProxLB solver, kubedrs at migration
//! thresholds 1-5, and the CP-SAT optimum per snapshot as a bound), through the one simulator, and the figures
//! written as CSV and Markdown (docs/benchmarks.md, "Comparison").
//!
//! Pools are generated: a third of the nodes 64 cores / 512 GiB of the newer CPU generation (Icelake), the
//! rest 32 cores / 256 GiB of the older one (Skylake); a tenth of the VMs require the newer CPU model. Every
//! policy starts from the same placement (kube-scheduler's, VMs in name order) and sees the same snapshots.
//! Workloads: real traces (PlanetLab CPU, Bitbrains CPU and memory with the VMs' own sizes), CPU samples scaled
//! by one factor per run so that the pool's mean CPU demand is `--load` of its capacity; synthetic spikes and
//! maintenance.

use super::RunResult;
use super::policies::external::External;
use super::policies::kube::{Descheduler, KubeScheduler, Scheduler};
use super::policies::{EnginePolicy, Policy};
use super::run::simulate_with;
use super::scenario::Scenario;
use super::workload::Pattern;
use anyhow::{Context, bail};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

const GIB: u64 = 1 << 30;
/// Where `kubedrs compare` writes unless told: a folder of its own (ignored by git), never the docs.
pub const DEFAULT_OUT: &str = "out/compare";

/// Arguments of `kubedrs compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Folder for the CSV and Markdown results (created; the published figures in docs/benchmarks are
    /// written only when asked: `--out docs/benchmarks`, as benches/compare/run.sh does).
    #[arg(long, default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Pools: small (20 nodes / 400 VMs), medium (100 / 2,000), large (1,000 / 20,000).
    #[arg(long, value_delimiter = ',', default_value = "small,medium,large")]
    pub pools: Vec<String>,
    /// Workloads: planetlab, bitbrains, spikes, maintenance.
    #[arg(long, value_delimiter = ',', default_value = "planetlab,bitbrains,spikes,maintenance")]
    pub workloads: Vec<String>,
    /// Policies: kube-scheduler, descheduler-20/50, descheduler-relieve, proxlb, kubedrs-t1 .. kubedrs-t5, optimum.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kube-scheduler,descheduler-20/50,descheduler-relieve,proxlb,kubedrs-t1,kubedrs-t2,kubedrs-t3,kubedrs-t4,kubedrs-t5,optimum"
    )]
    pub policies: Vec<String>,
    /// Simulated hours of the trace runs on the small and medium pools (one trace day is 24).
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
    /// Simulated hours on the large pool.
    #[arg(long, default_value_t = 6)]
    pub large_hours: u64,
    /// Mean CPU demand of the pool over the run, as a share of its capacity (trace runs).
    #[arg(long, default_value_t = 0.65)]
    pub load: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Python with proxlb-solver and ortools (benches/compare/requirements.txt).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The bridge script.
    #[arg(long, default_value = "benches/compare/bridge.py")]
    pub bridge: PathBuf,
    /// Time limit of one ProxLB or optimum solve, seconds.
    #[arg(long, default_value_t = 2.0)]
    pub time_limit: f64,
    /// Pools on which the optimum (and ProxLB) run: they are too slow beyond.
    #[arg(long, value_delimiter = ',', default_value = "small")]
    pub external_pools: Vec<String>,
    /// Folder of the traces (default: data/traces, the repository's, in this folder or one above it).
    #[arg(long)]
    pub traces: Option<PathBuf>,
}

/// One pool size.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub label: &'static str,
    pub nodes: usize,
    pub vms: usize,
}

pub fn pool_size(label: &str) -> anyhow::Result<PoolSize> {
    Ok(match label {
        "tiny" => PoolSize { label: "tiny", nodes: 6, vms: 60 },
        "small" => PoolSize { label: "small", nodes: 20, vms: 400 },
        "medium" => PoolSize { label: "medium", nodes: 100, vms: 2000 },
        "large" => PoolSize { label: "large", nodes: 1000, vms: 20000 },
        other => bail!("unknown pool {other:?}: tiny, small, medium, large"),
    })
}

/// One row of the results: a policy on a pool and workload.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub pool: String,
    pub nodes: usize,
    pub vms: usize,
    pub workload: String,
    pub hours: f64,
    pub policy: String,
    pub cpu_met: f64,
    pub memory_met: f64,
    pub imbalance_mean: f64,
    pub imbalance_p95: f64,
    pub cpu_spread_mean: f64,
    pub hottest_p99: f64,
    pub hottest_max: f64,
    pub migrations: u32,
    pub completed: u32,
    pub gib_moved: f64,
    pub ping_pong: u32,
    /// Node-minutes a migration's target spent above 100% of allocatable (requests or memory) while it was in transit.
    pub transit_overcommit: f64,
    pub deferred: u32,
    pub passes: u32,
    /// Wall-clock (not deterministic): mean and max time of a pass.
    pub decision_ms_mean: f64,
    pub decision_ms_max: f64,
    /// For external solvers: passes whose solve was optimal, and the mean proven lower bound of the imbalance.
    pub solver_note: String,
}

/// A trace VM's size.
#[derive(Debug, Clone, Copy)]
struct Size {
    vcpus: u32,
    gib: u64,
}

/// PlanetLab has no VM sizes: CloudSim-like types, cycled.
const PLANETLAB_TYPES: [Size; 6] = [
    Size { vcpus: 1, gib: 2 },
    Size { vcpus: 2, gib: 4 },
    Size { vcpus: 2, gib: 8 },
    Size { vcpus: 4, gib: 8 },
    Size { vcpus: 4, gib: 16 },
    Size { vcpus: 8, gib: 32 },
];

const PLANETLAB_DAYS: [(&str, usize); 5] =
    [("20110303", 1052), ("20110306", 898), ("20110309", 1061), ("20110322", 1516), ("20110325", 1078)];
const NEW_MODEL: &str = "Icelake-Server-noTSX";

/// Finds `data/traces` (the repository's) in the current folder or one above it.
fn find_traces(given: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let mut dir = std::env::current_dir()?;
    loop {
        let t = dir.join(super::scenario::DEFAULT_TRACES);
        if t.is_dir() {
            return Ok(t);
        }
        if !dir.pop() {
            bail!(
                "{} not found here or above (run from the repository): give --traces",
                super::scenario::DEFAULT_TRACES
            );
        }
    }
}

/// Largest cores and memory a Bitbrains VM had over its first `samples` samples (at least 1 core, 1 GiB; at most
/// 32 cores, 128 GiB).
fn bitbrains_size(traces: &Path, id: usize, samples: usize) -> anyhow::Result<Size> {
    let file = traces.join("bitbrains-rnd-2013-7").join(format!("{id:03}.csv.gz"));
    let f = std::fs::File::open(&file).with_context(|| format!("reading {}", file.display()))?;
    let (mut cores, mut kb) = (0.0f64, 0.0f64);
    for line in BufReader::new(flate2::read::GzDecoder::new(f)).lines().skip(1).take(samples) {
        let line = line?;
        let c: Vec<f64> = line.split(',').map(|x| x.trim().parse::<f64>().unwrap_or(0.0)).collect();
        if c.len() >= 6 {
            cores = cores.max(c[1]);
            kb = kb.max(c[4]);
        }
    }
    Ok(Size { vcpus: (cores as u32).clamp(1, 32), gib: ((kb / (1024.0 * 1024.0)).ceil() as u64).clamp(1, 128) })
}

/// The scenario of a pool and workload: nodes, VMs with their sizes and traces, initial placement by
/// kube-scheduler, CPU scaled to the target load.
pub fn scenario(pool: PoolSize, workload: &str, hours: u64, args: &CompareArgs) -> anyhow::Result<Scenario> {
    let big = pool.nodes.div_ceil(3);
    let small = pool.nodes - big;
    let mut y = String::new();
    let (duration, events) = match workload {
        "spikes" => (12, String::new()),
        "maintenance" => (
            10,
            "events:\n  - {at: 1h, action: enterMaintenance, node: small-1}\n  - {at: 4h, action: exitMaintenance, node: small-1}\n  - {at: 5h, action: enterMaintenance, node: big-1}\n  - {at: 8h, action: exitMaintenance, node: big-1}\n".to_string(),
        ),
        _ => (hours, String::new()),
    };
    let traces = if matches!(workload, "planetlab" | "bitbrains") { Some(find_traces(&args.traces)?) } else { None };
    let _ = writeln!(y, "name: {}-{workload}\nduration: {duration}h\nstep: 5m\nseed: {}", pool.label, args.seed);
    if let Some(t) = &traces {
        let _ = writeln!(y, "traces: {:?}", t.display().to_string());
    }
    let _ = writeln!(y, "pool: {{migrationThreshold: 3}}\nnodes:");
    let _ = writeln!(y, "  - {{prefix: big, count: {big}, cpu: 64, memory: 512Gi, generation: Icelake}}");
    if small > 0 {
        let _ = writeln!(y, "  - {{prefix: small, count: {small}, cpu: 32, memory: 256Gi, generation: Skylake}}");
    }
    let _ = writeln!(y, "vms:");
    let mut sizes: Vec<Size> = Vec::with_capacity(pool.vms);
    let mut shifts: Vec<f64> = Vec::with_capacity(pool.vms);
    match workload {
        "planetlab" => {
            // Rows of the five days in turn; beyond 5,605 VMs the rows repeat, 6 h later each round.
            let mut left = pool.vms;
            let mut round = 0;
            while left > 0 {
                for (day, rows) in PLANETLAB_DAYS {
                    let n = rows.min(left);
                    if n == 0 {
                        break;
                    }
                    let _ = writeln!(
                        y,
                        "  - {{prefix: pl{round}-{day}, count: {n}, vcpus: 1, memory: 1Gi, workload: {{cpu: {{planetlab: {{day: {day}}}}}, memory: 50%}}}}"
                    );
                    for k in 0..n {
                        sizes.push(PLANETLAB_TYPES[(k * 7 + round) % PLANETLAB_TYPES.len()]);
                        shifts.push(round as f64 * 6.0 * 3600.0);
                    }
                    left -= n;
                }
                round += 1;
            }
        }
        "bitbrains" => {
            let t = traces.as_ref().expect("traces found above");
            let samples = (duration as usize * 12).max(288);
            let mut left = pool.vms;
            let mut round = 0;
            let mut size_of = Vec::new();
            for id in 1..=500 {
                size_of.push(bitbrains_size(t, id, samples)?);
            }
            while left > 0 {
                let n = 500.min(left);
                let _ = writeln!(
                    y,
                    "  - {{prefix: bb{round}, count: {n}, vcpus: 1, memory: 1Gi, workload: {{cpu: {{bitbrains: {{first: 1}}}}, memory: {{bitbrains: {{first: 1}}}}}}}}"
                );
                for &size in &size_of[..n] {
                    sizes.push(size);
                    shifts.push(round as f64 * 6.0 * 3600.0);
                }
                left -= n;
                round += 1;
            }
        }
        "spikes" | "maintenance" => {
            let pattern = "{diurnal: {min: 15%, max: 45%, period: 24h, peakAt: \"06:00\"}}";
            let _ = writeln!(
                y,
                "  - {{prefix: vm, count: {}, vcpus: 1, memory: 1Gi, workload: {{cpu: {pattern}, memory: 50%, noise: 10%, stagger: 2m}}}}",
                pool.vms
            );
            for k in 0..pool.vms {
                sizes.push(PLANETLAB_TYPES[(k * 7) % PLANETLAB_TYPES.len()]);
                shifts.push((k as f64 * 120.0) % 86400.0);
            }
        }
        other => bail!("unknown workload {other:?}: planetlab, bitbrains, spikes, maintenance"),
    }
    y.push_str(&events);
    let path = std::env::current_dir()?.join(format!("compare-{}-{workload}.yaml", pool.label));
    let mut s = Scenario::parse(&path, &y).map_err(|e| anyhow::anyhow!("generated scenario: {e}"))?;

    // Sizes, requests (KubeVirt's defaults: vCPUs/10, guest memory), CPU models, time shifts.
    for (i, d) in s.vms.iter_mut().enumerate() {
        let z = sizes[i];
        d.vm.vcpus = z.vcpus;
        d.vm.memory_size_bytes = z.gib * GIB;
        d.vm.cpu.reservation = z.vcpus as u64 * 100;
        d.vm.memory.reservation = z.gib * GIB;
        d.workload.shift = shifts[i];
        if i % 10 == 3 {
            d.vm.cpu_requirement = kubedrs_engine::CpuRequirement::Model(NEW_MODEL.into());
        }
    }
    // Same start for everyone: kube-scheduler places the VMs one by one, in name order.
    place_all(&mut s);
    if workload == "spikes" {
        // The VMs on the three first nodes by name spike to 95% for 2 h every 6 h, from 02:00.
        let mut hot: Vec<String> = s.nodes.iter().map(|n| n.name.clone()).collect();
        hot.sort();
        hot.truncate(3);
        for d in &mut s.vms {
            if d.vm.node.as_ref().is_some_and(|n| hot.contains(n)) {
                d.workload.cpu =
                    Pattern::Spikes { base: 0.2, level: 0.95, at: 7200.0, duration: 7200.0, every: Some(21600.0) };
                d.workload.shift = 0.0;
            }
        }
    } else if matches!(workload, "planetlab" | "bitbrains") {
        scale_cpu(&mut s, args.load);
    }
    Ok(s)
}

/// kube-scheduler's placement of every VM, one at a time in name order, on the empty pool.
fn place_all(s: &mut Scenario) {
    let mut snap = kubedrs_engine::Snapshot { nodes: s.nodes.clone(), ..Default::default() };
    let mut order: Vec<usize> = (0..s.vms.len()).collect();
    order.sort_by(|&a, &b| s.vms[a].vm.name.cmp(&s.vms[b].vm.name));
    let mut sched_req = vec![[0u64; 2]; s.nodes.len()];
    for i in order {
        let vm = s.vms[i].vm.clone();
        snap.vms.clear();
        let mut sched = Scheduler::new(&snap);
        sched.requested = sched_req.clone();
        if let Some(h) = sched.pick(&vm, None) {
            sched.bind(&vm, h);
            sched_req = sched.requested.clone();
            s.vms[i].vm.node = Some(s.nodes[h].name.clone());
        }
    }
}

/// Scales every trace VM's CPU samples by one factor so that the pool's mean CPU demand over the run is `load`
/// of its capacity (samples are clamped at 100% of the VM, so the factor is found by bisection).
fn scale_cpu(s: &mut Scenario, load: f64) {
    let cap: f64 = s.nodes.iter().map(|n| n.capacity.cpu_millis as f64).sum();
    let steps: Vec<f64> = (0..s.duration / s.step).step_by(3).map(|k| (k * s.step) as f64).collect();
    let demand = |s: &Scenario, f: f64| -> f64 {
        let mut total = 0.0;
        for d in &s.vms {
            if let Pattern::Trace { samples, .. } = &d.workload.cpu {
                let p = Pattern::Trace { samples: samples.clone(), scale: f };
                for &t in &steps {
                    total += p.at(t + d.workload.shift) * d.vm.vcpus as f64 * 1000.0;
                }
            }
        }
        total / steps.len().max(1) as f64
    };
    let (mut lo, mut hi) = (0.01f64, 50.0f64);
    for _ in 0..30 {
        let mid = (lo * hi).sqrt();
        if demand(s, mid) < load * cap {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let f = (lo * hi).sqrt();
    for d in &mut s.vms {
        if let Pattern::Trace { scale, .. } = &mut d.workload.cpu {
            *scale = f;
        }
    }
    s.description = format!("CPU samples x{f:.2} (pool mean CPU demand {:.0}% of capacity)", load * 100.0);
}

/// Builds the policy named `name` for a run on `pool`.
fn policy(name: &str, args: &CompareArgs) -> anyhow::Result<Box<dyn Policy>> {
    let ext = |mode: &str, extra: &[&str]| -> anyhow::Result<Box<dyn Policy>> {
        let mut a = vec![
            args.bridge.display().to_string(),
            mode.to_string(),
            "--time-limit".into(),
            args.time_limit.to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        Ok(Box::new(External::spawn(name, &args.python, &a).map_err(anyhow::Error::msg)?))
    };
    Ok(match name {
        "kube-scheduler" => Box::new(KubeScheduler),
        "descheduler-20/50" => Box::new(Descheduler::long_lifecycle()),
        "descheduler-relieve" => Box::new(Descheduler::relieve_and_migrate()),
        "proxlb" => ext("proxlb", &[])?,
        "optimum" => ext("optimum", &[])?,
        n if n.starts_with("kubedrs-t") => Box::new(EnginePolicy),
        other => bail!("unknown policy {other:?}"),
    })
}

fn threshold_of(name: &str) -> u8 {
    name.strip_prefix("kubedrs-t").and_then(|t| t.parse().ok()).unwrap_or(3)
}

/// Runs one policy on a scenario and summarizes it.
pub fn run_one(
    s: &Scenario,
    pool: PoolSize,
    workload: &str,
    name: &str,
    p: &mut dyn Policy,
) -> anyhow::Result<(Row, RunResult)> {
    let mut s = s.clone();
    s.pool.migration_threshold = threshold_of(name);
    let r = simulate_with(&s, p, &mut |_, _| {}).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok((row(&r, pool, workload, name, &s), r))
}

fn r4(x: f64) -> f64 {
    super::metrics::r4(x)
}

fn row(r: &RunResult, pool: PoolSize, workload: &str, name: &str, s: &Scenario) -> Row {
    let m = &r.summary;
    // Hottest node per step, from the per-node series.
    let steps = r.steps.t.len();
    let mut hottest: Vec<f64> = (0..steps)
        .map(|k| r.steps.cpu_load.iter().filter_map(|n| n.get(k).copied().flatten()).fold(0.0, f64::max))
        .collect();
    hottest.sort_by(f64::total_cmp);
    let p99 = if hottest.is_empty() {
        0.0
    } else {
        hottest[((hottest.len() as f64 * 0.99).ceil() as usize).clamp(1, hottest.len()) - 1]
    };
    let balance: Vec<u64> =
        r.passes.iter().zip(&r.timing.pass_micros).filter(|(p, _)| p.kind == "balance").map(|(_, &us)| us).collect();
    let mean_ms =
        if balance.is_empty() { 0.0 } else { balance.iter().sum::<u64>() as f64 / balance.len() as f64 / 1000.0 };
    let max_ms = balance.iter().copied().max().unwrap_or(0) as f64 / 1000.0;
    Row {
        pool: pool.label.into(),
        nodes: s.nodes.len(),
        vms: s.vms.len(),
        workload: workload.into(),
        hours: r.duration_secs as f64 / 3600.0,
        policy: name.into(),
        cpu_met: m.demand_met.cpu,
        memory_met: m.demand_met.memory,
        imbalance_mean: m.imbalance.mean,
        imbalance_p95: m.imbalance.p95,
        cpu_spread_mean: m.cpu_load_stddev.mean,
        hottest_p99: r4(p99),
        hottest_max: r4(m.hottest_node.max),
        migrations: m.migrations.started,
        completed: m.migrations.completed,
        gib_moved: m.migrations.gib_moved,
        ping_pong: m.ping_pong,
        transit_overcommit: m.transit_overcommit_node_minutes,
        deferred: m.deferred,
        passes: m.balancing_passes,
        decision_ms_mean: r4(mean_ms),
        decision_ms_max: r4(max_ms),
        solver_note: String::new(),
    }
}

/// Runs the comparison and writes its files; returns the rows.
pub fn compare(args: &CompareArgs, log: &mut dyn FnMut(&str)) -> anyhow::Result<Vec<Row>> {
    std::fs::create_dir_all(&args.out)?;
    let mut rows = Vec::new();
    let mut series = String::from("pool,workload,policy,t,hottest,cpu_met,in_flight\n");
    for pool_label in &args.pools {
        let pool = pool_size(pool_label)?;
        for workload in &args.workloads {
            if pool.label == "large" && workload != "planetlab" {
                continue;
            }
            let hours = if pool.label == "large" { args.large_hours } else { args.hours };
            let started = Instant::now();
            let s = scenario(pool, workload, hours, args)?;
            log(&format!(
                "{}/{workload}: {} nodes, {} VMs, {} ({:.1}s to build)",
                pool.label,
                s.nodes.len(),
                s.vms.len(),
                s.description,
                started.elapsed().as_secs_f64()
            ));
            for name in &args.policies {
                let external = matches!(name.as_str(), "proxlb" | "optimum");
                if external && !args.external_pools.iter().any(|p| p == pool.label) {
                    continue;
                }
                let started = Instant::now();
                let mut p = policy(name, args)?;
                let (mut row, r) = run_one(&s, pool, workload, name, p.as_mut())?;
                row.solver_note = p.report();
                drop(p);
                for (k, t) in r.steps.t.iter().enumerate() {
                    let hot = r.steps.cpu_load.iter().filter_map(|n| n.get(k).copied().flatten()).fold(0.0, f64::max);
                    let _ = writeln!(
                        series,
                        "{},{workload},{name},{t},{hot:.4},{:.4},{}",
                        pool.label, r.steps.cpu_met[k], r.steps.in_flight[k]
                    );
                }
                log(&format!(
                    "  {name:<20} CPU met {:.2}%  imbalance {:.4}/{:.4}  hottest p99 {:.0}%  {} migrations ({:.0} GiB)  ping-pong {}  pass {:.1} ms  [{:.0}s]",
                    row.cpu_met * 100.0,
                    row.imbalance_mean,
                    row.imbalance_p95,
                    row.hottest_p99 * 100.0,
                    row.migrations,
                    row.gib_moved,
                    row.ping_pong,
                    row.decision_ms_mean,
                    started.elapsed().as_secs_f64()
                ));
                rows.push(row);
            }
        }
    }
    write_csv(&args.out.join("compare.csv"), &rows)?;
    std::fs::write(args.out.join("compare-series.csv"), series)?;
    std::fs::write(args.out.join("compare.md"), markdown(&rows))?;
    Ok(rows)
}

fn write_csv(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let mut out = String::from(
        "pool,nodes,vms,workload,hours,policy,cpu_met,memory_met,imbalance_mean,imbalance_p95,cpu_spread_mean,hottest_p99,hottest_max,migrations,completed,gib_moved,ping_pong,transit_overcommit_node_min,deferred,passes,decision_ms_mean,decision_ms_max,solver_note\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"",
            r.pool,
            r.nodes,
            r.vms,
            r.workload,
            r.hours,
            r.policy,
            r.cpu_met,
            r.memory_met,
            r.imbalance_mean,
            r.imbalance_p95,
            r.cpu_spread_mean,
            r.hottest_p99,
            r.hottest_max,
            r.migrations,
            r.completed,
            r.gib_moved,
            r.ping_pong,
            r.transit_overcommit,
            r.deferred,
            r.passes,
            r.decision_ms_mean,
            r.decision_ms_max,
            r.solver_note.replace('"', "'")
        );
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// One Markdown table per pool and workload.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in rows {
        let k = (r.pool.clone(), r.workload.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (pool, workload) in keys {
        let group: Vec<&Row> = rows.iter().filter(|r| r.pool == pool && r.workload == workload).collect();
        let f = group[0];
        let _ = writeln!(out, "#### {} nodes / {} VMs, {workload}, {} h\n", f.nodes, f.vms, f.hours);
        let _ = writeln!(
            out,
            "| policy | CPU met | memory met | imbalance mean | imbalance p95 | hottest node p99 | migrations | GiB moved | ping-pong | transit overcommit (node-min) | pass mean / max (ms) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        for r in group {
            let _ = writeln!(
                out,
                "| {} | {:.2}% | {:.2}% | {:.4} | {:.4} | {:.0}% | {} | {:.0} | {} | {:.0} | {:.1} / {:.1} |",
                r.policy,
                r.cpu_met * 100.0,
                r.memory_met * 100.0,
                r.imbalance_mean,
                r.imbalance_p95,
                r.hottest_p99 * 100.0,
                r.migrations,
                r.gib_moved,
                r.ping_pong,
                r.transit_overcommit,
                r.decision_ms_mean,
                r.decision_ms_max
            );
        }
        out.push('\n');
    }
    out
}

/// `kubedrs compare`.
pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let rows = compare(&args, &mut |line| eprintln!("{line}"))?;
    super::cli::emit(&markdown(&rows))?;
    eprintln!("wrote {}/compare.csv, compare-series.csv, compare.md", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CompareArgs {
        CompareArgs {
            out: std::env::temp_dir(),
            pools: vec!["tiny".into()],
            workloads: vec!["spikes".into()],
            policies: vec![],
            hours: 2,
            large_hours: 1,
            load: 0.55,
            seed: 3,
            python: "python3".into(),
            bridge: "benches/compare/bridge.py".into(),
            time_limit: 1.0,
            external_pools: vec![],
            traces: None,
        }
    }

    #[test]
    fn same_seed_same_results_for_every_built_in_policy() {
        let a = args();
        let pool = pool_size("tiny").expect("a pool");
        let s = scenario(pool, "spikes", 2, &a).expect("a scenario");
        assert!(s.vms.iter().all(|v| v.vm.node.is_some()), "everyone starts placed");
        for name in ["kube-scheduler", "descheduler-20/50", "descheduler-relieve", "kubedrs-t3"] {
            let once = |_: ()| {
                let mut p = policy(name, &a).expect("a policy");
                let (mut row, _) = run_one(&s, pool, "spikes", name, p.as_mut()).expect("a run");
                row.decision_ms_mean = 0.0;
                row.decision_ms_max = 0.0;
                row
            };
            assert_eq!(once(()), once(()), "{name}");
        }
    }

    #[test]
    fn the_spike_pool_starts_out_of_balance_and_kubedrs_moves_while_kube_scheduler_does_not() {
        let a = args();
        let pool = pool_size("tiny").expect("a pool");
        let s = scenario(pool, "spikes", 12, &a).expect("a scenario");
        let (ks, _) = run_one(&s, pool, "spikes", "kube-scheduler", &mut KubeScheduler).expect("a run");
        let (k3, _) = run_one(&s, pool, "spikes", "kubedrs-t3", &mut EnginePolicy).expect("a run");
        assert_eq!(ks.migrations, 0);
        assert!(k3.migrations > 0);
        assert!(k3.hottest_p99 <= ks.hottest_p99, "{k3:?} {ks:?}");
    }

    #[test]
    fn the_markdown_table_has_a_row_per_policy() {
        let row = Row {
            pool: "tiny".into(),
            nodes: 6,
            vms: 60,
            workload: "spikes".into(),
            hours: 2.0,
            policy: "kube-scheduler".into(),
            cpu_met: 0.99,
            memory_met: 1.0,
            imbalance_mean: 0.1,
            imbalance_p95: 0.2,
            cpu_spread_mean: 0.1,
            hottest_p99: 0.9,
            hottest_max: 1.0,
            migrations: 0,
            completed: 0,
            gib_moved: 0.0,
            ping_pong: 0,
            transit_overcommit: 0.0,
            deferred: 0,
            passes: 24,
            decision_ms_mean: 0.1,
            decision_ms_max: 0.2,
            solver_note: String::new(),
        };
        let md = markdown(&[row.clone(), Row { policy: "kubedrs-t3".into(), ..row }]);
        assert!(md.contains("| kube-scheduler | 99.00% |") && md.contains("| kubedrs-t3 |"), "{md}");
    }
}
