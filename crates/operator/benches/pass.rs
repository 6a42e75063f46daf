//! A whole pass of the operator (observe, plan, actuate, status) on fixtures the size of the scale bench:
//! 1,000 nodes of three CPU generations and 1,000, 3,000 or 10,000 running VMs with their launcher pods, one
//! pool, the engine's share apart (`observe` alone, then `pass`), with usage samples every 30 s over the
//! demand window for every VM, as the operator has them after half an hour. Pure: no API server (see docs/benchmarks.md).
//!
//! Also what the reflectors spend reading a list of real-sized launcher pods (`read pods`), against the
//! `serde_json::Value` tree they built for each item before.
//!
//! `cargo bench -p kubedrs-operator --bench pass`; `-- observe/10000` one case.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::jiff::Timestamp;
use kube::core::ObjectList;
use kubedrs_engine::Resources;
use kubedrs_engine::cpu::models_up_to;
use kubedrs_operator::fixtures::{launcher, node, pool, vmi};
use kubedrs_operator::keys;
use kubedrs_operator::observe::{Cluster, DemandWindow, observe_pools};
use kubedrs_operator::pass::{PassInput, PoolMemo, Settings, pass};
use kubedrs_operator::pod::CachedPod;
use kubedrs_operator::tolerant::Tolerant;
use serde_json::{Value, json};

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

/// A virt-launcher pod as KubeVirt's virt-controller wrote it on the e2e cluster (`kubectl get pod -o json`
/// of a 1-vCPU VM, recorded once, managed fields left out as the operator's watches ask for them).
const LAUNCHER_POD: &str = include_str!("data/virt-launcher-pod.json");

/// The text of a PodList of `n` such pods, names and UIDs made unique, as the API server sends a list.
fn pod_list(n: usize) -> String {
    let pod: Value = serde_json::from_str(LAUNCHER_POD).expect("benches/data/virt-launcher-pod.json is JSON");
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let mut p = pod.clone();
            p["metadata"]["name"] = json!(format!("virt-launcher-vm-{i:05}-x7k2p"));
            p["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
            p
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items});
    serde_json::to_string(&list).expect("a list serializes")
}

fn reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("read pods");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for n in [1_000, 3_000] {
        let text = pod_list(n);
        // Both ways read every pod, and read it the same.
        let tolerant: ObjectList<Tolerant<CachedPod>> = serde_json::from_str(&text).expect("a list");
        let values: ObjectList<Value> = serde_json::from_str(&text).expect("a list");
        for (t, v) in tolerant.items.iter().zip(&values.items) {
            let Tolerant::Read(pod) = t else { panic!("a launcher pod unreadable: {t:?}") };
            assert_eq!(Some(pod), serde_path_to_error::deserialize::<_, CachedPod>(v).ok().as_ref());
        }
        g.bench_function(format!("tolerant/{n}"), |b| {
            b.iter(|| serde_json::from_str::<ObjectList<Tolerant<CachedPod>>>(black_box(&text)).expect("a list"))
        });
        // The former way: a Value tree per item, then the typed parse from it.
        g.bench_function(format!("value-tree/{n}"), |b| {
            b.iter(|| {
                let list: ObjectList<Value> = serde_json::from_str(black_box(&text)).expect("a list");
                let read: Vec<CachedPod> = list
                    .items
                    .iter()
                    .map(|v| serde_path_to_error::deserialize::<_, CachedPod>(v).expect("a pod"))
                    .collect();
                read
            })
        });
    }
    g.finish();
}

criterion_group!(benches, passes, reads);
criterion_main!(benches);
