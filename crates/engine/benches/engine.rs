//! Engine speed on generated pools (see docs/benchmarks.md for the figures and the machine).
//!
//! `cargo bench -p kubedrs-engine --bench engine` runs them all; `cargo bench -p kubedrs-engine --bench engine -- balance/1000` one group.

use criterion::{Criterion, criterion_group, criterion_main};
use kubedrs_engine::{self, build};
use std::hint::black_box;
use std::time::Duration;

fn balance(c: &mut Criterion) {
    let mut g = c.benchmark_group("balance");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for (nodes, vms) in [(100, 2_000), (1_000, 20_000), (10_000, 200_000)] {
        let snap = build::generated_pool(nodes, vms, 7);
        g.bench_function(format!("{nodes}n_{vms}vm"), |b| {
            b.iter(|| kubedrs_engine::plan(black_box(&snap)).expect("valid"))
        });
    }
    g.finish();
}

fn evacuate(c: &mut Criterion) {
    let mut g = c.benchmark_group("evacuate");
    g.sample_size(20);
    let mut snap = build::evacuation_pool(1_000, 20_000, 100, 11);
    snap.pool.migration_threshold = 1; // evacuation alone, no balancing after it
    g.bench_function("100vm_node_in_1000n", |b| b.iter(|| kubedrs_engine::plan(black_box(&snap)).expect("valid")));
    g.finish();
}

criterion_group!(benches, balance, evacuate);
criterion_main!(benches);
