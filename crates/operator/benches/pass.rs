//! A whole pass of the operator (observe, plan, actuate, status) on fixtures the size of the scale bench:
//! 1,000 nodes of three CPU generations and 1,000, 3,000 or 10,000 running VMs with their launcher pods, one
//! pool, the engine's share apart (`observe` alone, then `pass`), with usage samples every 30 s over the
//! demand window for every VM, as the operator has them after half an hour. Pure: no API server (see docs/benchmarks.md).
//!
//! `cargo bench -p kubedrs-operator --bench pass`; `-- observe/10000` one case.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::jiff::Timestamp;
use kubedrs_engine::Resources;
use kubedrs_engine::cpu::models_up_to;
use kubedrs_operator::fixtures::{launcher, node, pool, vmi};
use kubedrs_operator::keys;
use kubedrs_operator::observe::{Cluster, DemandWindow, observe_pools};
use kubedrs_operator::pass::{PassInput, PoolMemo, Settings, pass};

const NOW: i64 = 1_800_000_000;

/// The host models of the nodes' three CPU generations; each node lists every model up to its own, as
/// KubeVirt's node-labeller does.
const GENERATIONS: [&str; 3] = ["Broadwell-noTSX", "Cascadelake-Server", "Icelake-Server"];

/// `nodes` nodes of 32 cores and 128 GiB in pool `prod` (CPU labels of three generations), `vms` VMs of 1
/// vCPU and 1 GiB spread over them.
fn cluster(nodes: usize, vms: usize) -> Cluster {
    let vmis: Vec<_> = (0..vms)
        .map(|i| vmi(&format!("ns/vm-{i:05}")).on(&format!("n{:04}", i % nodes)).cpus(1).memory("1Gi").build())
        .collect();
    Cluster {
        pools: vec![Arc::new(pool("prod").selects(keys::POOL, "prod").build())],
        nodes: (0..nodes)
            .map(|n| {
                let host = GENERATIONS[n % GENERATIONS.len()];
                let models = models_up_to(host);
                let b = node(&format!("n{n:04}")).cpu("32").memory("128Gi").in_pool("prod");
                let b = b.cpu_models(&models.iter().map(String::as_str).collect::<Vec<_>>());
                Arc::new(b.host_model(host).vendor("Intel").build())
            })
            .collect(),
        pods: vmis.iter().map(|v| Arc::new(launcher(v).requests("100m", "1224Mi").build().into())).collect(),
        vmis: vmis.into_iter().map(Arc::new).collect(),
        ..Cluster::default()
    }
}

/// A usage sample every 30 s over the long demand window for each VM: 10-80% of its vCPU and 30-90% of
/// its memory, different per VM and per sample.
fn demand(vms: usize) -> DemandWindow {
    let mut d = DemandWindow::default();
    let from = NOW as u64 - d.long_secs;
    for i in 0..vms {
        let key = format!("ns/vm-{i:05}");
        for (k, at) in (from..=NOW as u64).step_by(30).enumerate() {
            let x = ((i * 7919 + k * 104_729) % 71) as u64;
            d.record(&key, at, Resources::new(100 + x * 10, (300 + x * 8) << 20));
        }
    }
    d
}

fn passes(c: &mut Criterion) {
    let memo = PoolMemo::default();
    let mut g = c.benchmark_group("observe");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let clusters: Vec<(usize, Cluster, DemandWindow)> =
        [1_000, 3_000, 10_000].into_iter().map(|v| (v, cluster(1_000, v), demand(v))).collect();
    for (vms, cl, demand) in &clusters {
        g.bench_function(format!("{vms}"), |b| {
            b.iter(|| observe_pools(black_box(cl), demand, NOW as u64, Some("prod")))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("pass");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (vms, cl, demand) in &clusters {
        g.bench_function(format!("{vms}"), |b| {
            b.iter(|| {
                pass(&PassInput {
                    pool: &cl.pools[0],
                    cluster: black_box(cl),
                    demand,
                    settings: Settings::default(),
                    memo: &memo,
                    totals: &[],
                    now: Timestamp::from_second(NOW).expect("a valid instant"),
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, passes);
criterion_main!(benches);
