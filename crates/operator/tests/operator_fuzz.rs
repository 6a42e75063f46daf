//! Observe and the pass fed arbitrary Kubernetes objects: missing fields, absurd quantities (up to
//! u64::MAX and beyond), unknown CPU models, selectors that match nothing or everything, two pools claiming
//! one node. Nothing panics, every problem is reported on the object it is about, and a bad object in one
//! pool leaves the other pools' observation as it was.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kubedrs_operator::fixtures::{launcher, node, pool, vmi};
use kubedrs_operator::keys;
use kubedrs_operator::observe::{Cluster, DemandWindow, observe};
use kubedrs_operator::pass::{PassInput, PoolMemo, Settings, pass};
use proptest::prelude::*;

const NOW: u64 = 1_750_000_000;

/// Quantities, sane and not: empty, negative, fractional millicores, u64::MAX, past u64, exponents.
const QTY: &[&str] = &[
    "0",
    "1",
    "500m",
    "16",
    "4Gi",
    "64Gi",
    "",
    "-5",
    "abc",
    "0.0001m",
    "18446744073709551615",
    "18446744073709551616",
    "18446744073709551615Ei",
    "1e30",
    "9223372036854775807k",
];
const MODELS: &[&str] = &["", "host-model", "host-passthrough", "Broadwell-noTSX", "Zen99-Unknown"];

#[derive(Debug, Clone)]
struct NodeIn {
    pool: Option<u8>,
    cpu: Option<usize>,
    memory: Option<usize>,
    ready: bool,
    model: usize,
}

#[derive(Debug, Clone)]
struct VmIn {
    node: Option<usize>,
    cpus: u32,
    memory: Option<usize>,
    requests: Option<(usize, usize)>,
    model: usize,
    pool: Option<u8>,
}

fn node_in() -> impl Strategy<Value = NodeIn> {
    (
        proptest::option::of(0u8..3),
        proptest::option::of(0..QTY.len()),
        proptest::option::of(0..QTY.len()),
        any::<bool>(),
        0..MODELS.len(),
    )
        .prop_map(|(pool, cpu, memory, ready, model)| NodeIn { pool, cpu, memory, ready, model })
}

fn vm_in() -> impl Strategy<Value = VmIn> {
    (
        proptest::option::of(0usize..8),
        prop_oneof![0u32..8, Just(u32::MAX)],
        proptest::option::of(0..QTY.len()),
        proptest::option::of((0..QTY.len(), 0..QTY.len())),
        0..MODELS.len(),
        proptest::option::of(0u8..4),
    )
        .prop_map(|(node, cpus, memory, requests, model, pool)| VmIn { node, cpus, memory, requests, model, pool })
}

/// Pools `p0` and `p1` (matchLabels) always; extra pools select everything (an empty selector) or nothing.
fn cluster(extra: &[bool], nodes: &[NodeIn], vms: &[VmIn]) -> Cluster {
    let mut pools = vec![
        Arc::new(pool("p0").selects(keys::POOL, "p0").build()),
        Arc::new(pool("p1").selects(keys::POOL, "p1").build()),
    ];
    for (i, everything) in extra.iter().enumerate() {
        let p = if *everything { pool(&format!("all{i}")) } else { pool(&format!("none{i}")).selects("no", "such") };
        pools.push(Arc::new(p.build()));
    }
    let nodes: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut b = node(&format!("n{i}"));
            if let Some(p) = n.pool {
                b = b.in_pool(&format!("p{p}"));
            }
            if let Some(q) = n.cpu {
                b = b.cpu(QTY[q]);
            }
            if let Some(q) = n.memory {
                b = b.memory(QTY[q]);
            }
            if !n.ready {
                b = b.not_ready();
            }
            if !MODELS[n.model].is_empty() {
                b = b.cpu_models(&[MODELS[n.model]]).host_model(MODELS[n.model]);
            }
            Arc::new(b.build())
        })
        .collect();
    let vmis: Vec<_> = vms
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut b = vmi(&format!("shop/v{i}")).cpus(v.cpus).model(MODELS[v.model]);
            match v.node {
                Some(n) => b = b.on(&format!("n{n}")),
                None => b = b.pending(),
            }
            if let Some(q) = v.memory {
                b = b.memory(QTY[q]);
            }
            if let Some((c, m)) = v.requests {
                b = b.requests(QTY[c], QTY[m]);
            }
            if let Some(p) = v.pool {
                b = b.label(keys::POOL, &format!("p{p}"));
            }
            b.build()
        })
        .collect();
    Cluster {
        pools,
        nodes,
        pods: vmis.iter().filter(|v| v.node_name().is_some()).map(|v| Arc::new(launcher(v).build().into())).collect(),
        vmis: vmis.into_iter().map(Arc::new).collect(),
        ..Cluster::default()
    }
}

fn names(c: &Cluster) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    out.extend(c.pools.iter().map(|p| ("HostPool".to_string(), p.metadata.name.clone().unwrap_or_default())));
    out.extend(c.nodes.iter().map(|n| ("Node".to_string(), n.metadata.name.clone().unwrap_or_default())));
    out.extend(c.pods.iter().map(|p| ("Pod".to_string(), p.metadata.name.clone().unwrap_or_default())));
    out.extend(
        c.vmis.iter().map(|v| ("VirtualMachineInstance".to_string(), v.metadata.name.clone().unwrap_or_default())),
    );
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn observe_and_pass_survive_anything_and_report_on_the_right_object(
        extra in proptest::collection::vec(any::<bool>(), 0..3),
        nodes in proptest::collection::vec(node_in(), 0..8),
        vms in proptest::collection::vec(vm_in(), 0..12),
    ) {
        let c = cluster(&extra, &nodes, &vms);
        let obs = observe(&c, &DemandWindow::default(), NOW);
        let known = names(&c);
        for w in &obs.warnings {
            prop_assert!(known.contains(&(w.kind.to_string(), w.name.clone())), "warning on an unknown object: {w:?}");
        }
        // Every quantity the engine gets is within the bounds observe promises.
        for p in &obs.pools {
            if let Some(s) = &p.snapshot {
                for n in &s.nodes {
                    prop_assert!(n.capacity.cpu_millis <= kubedrs_operator::observe::MAX_CPU_MILLIS);
                    prop_assert!(n.capacity.memory_bytes <= kubedrs_operator::observe::MAX_MEMORY_BYTES);
                }
            }
        }
        for p in &c.pools {
            let out = pass(&PassInput {
                pool: p,
                cluster: &c,
                demand: &DemandWindow::default(),
                settings: Settings::default(),
                memo: &PoolMemo::default(),
                totals: &[],
                now: Timestamp::from_second(NOW as i64).unwrap(),
            });
            prop_assert!(out.refused.is_none(), "the engine refused {}: {:?}", p.metadata.name.clone().unwrap_or_default(), out.refused);
        }
    }

    #[test]
    fn a_bad_object_in_one_pool_leaves_the_other_pools_as_they_were(
        nodes in proptest::collection::vec(node_in(), 0..6),
        vms in proptest::collection::vec(vm_in(), 0..8),
        bad_cpu in 0..QTY.len(),
        bad_memory in 0..QTY.len(),
    ) {
        let c = cluster(&[], &nodes, &vms);
        let before = observe(&c, &DemandWindow::default(), NOW);
        // A garbage node and a garbage VM on it, both in p0.
        let mut bad = c.clone();
        bad.nodes.push(Arc::new(node("garbage").in_pool("p0").cpu(QTY[bad_cpu]).memory("18446744073709551615").build()));
        bad.nodes.push(Arc::new(node("host").in_pool("p0").cpu("16").memory("64Gi").build()));
        let v = vmi("shop/garbage").on("host").cpus(u32::MAX).memory("18446744073709551615Ei").requests(QTY[bad_cpu], QTY[bad_memory]).model("Zen99-Unknown").build();
        bad.pods.push(Arc::new(launcher(&v).build().into()));
        bad.vmis.push(Arc::new(v));
        let after = observe(&bad, &DemandWindow::default(), NOW);
        prop_assert_eq!(before.pool("p1"), after.pool("p1"));
        // The absurd guest memory is reported on the garbage VMI itself.
        prop_assert!(after.warnings.iter().any(|w| w.kind == "VirtualMachineInstance" && w.name == "garbage"
            && w.message.contains("memory.guest")), "{:?}", after.warnings);
        // And the garbage node's memory (u64::MAX bytes, above the bound) on the node.
        prop_assert!(after.warnings.iter().any(|w| w.kind == "Node" && w.name == "garbage"
            && w.message.contains("allocatable.memory")), "{:?}", after.warnings);
    }
}
