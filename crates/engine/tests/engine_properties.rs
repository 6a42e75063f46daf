//! Properties of the engine on random small pools, with a brute-force oracle for evacuation.

use kubedrs_engine::{self, Node, NodeState, Plan, Rule, RuleKind, Selector, Snapshot, Vm};
use kubedrs_engine::{Claim, divvy};
use proptest::prelude::*;
use std::collections::BTreeMap;

const GIB: u64 = 1 << 30;

fn claim() -> impl Strategy<Value = Claim> {
    (0.0..50.0f64, prop::option::of(0.0..100.0f64), 0.0..100.0f64, 1.0..4000.0f64).prop_map(|(r, l, d, s)| Claim {
        reservation: r,
        limit: l.map_or(f64::INFINITY, |l| l.max(r)),
        demand: d,
        shares: s,
    })
}

proptest! {
    #[test]
    fn entitlements_fit_capacity_and_cover_reservations(claims in prop::collection::vec(claim(), 1..30), cap in 0.0..2000.0f64) {
        let e = divvy(&claims, cap);
        let reserved: f64 = claims.iter().map(|c| c.reservation).sum();
        for (c, e) in claims.iter().zip(&e) {
            prop_assert!(*e >= c.reservation - 1e-6, "reservation not covered: {e} < {}", c.reservation);
            prop_assert!(*e <= c.reservation.max(c.demand.min(c.limit)) + 1e-6, "above demand/limit");
        }
        if reserved <= cap {
            prop_assert!(e.iter().sum::<f64>() <= cap + 1e-6 * cap.max(1.0), "sum {} > capacity {cap}", e.iter().sum::<f64>());
        }
    }
}

/// A random pool: 3-4 nodes of two CPU generations, 2-9 VMs with labels a/b, anti-affinity on `a`,
/// a VM-node rule on `b`, random demands and reservations, node 0 possibly in maintenance.
fn pool(maintenance: bool) -> impl Strategy<Value = Snapshot> {
    let nodes = prop::collection::vec((4u64..=16, 8u64..=32, any::<bool>(), any::<bool>()), 3..=4);
    let vms = prop::collection::vec(
        (0usize..4, 0.1..6.0f64, 0.5..8.0f64, 0.0..2.0f64, 0u64..=4, 0u8..6, any::<bool>()),
        2..=9,
    );
    (nodes, vms, 2u8..=5).prop_map(move |(nodes, vms, threshold)| {
        let mut ns: Vec<Node> = nodes
            .iter()
            .enumerate()
            .map(|(i, &(cores, gib, new, ssd))| {
                let mut n = Node::test(&format!("n{i}")).cores(cores).gib(gib).generation(if new {
                    "Icelake-Server"
                } else {
                    "Haswell-noTSX"
                });
                if ssd {
                    n = n.label("disk", "ssd");
                }
                n
            })
            .collect();
        if maintenance {
            ns[0].state = NodeState::EnteringMaintenance;
        }
        let count = ns.len();
        let vs = vms
            .iter()
            .enumerate()
            .map(|(i, &(node, cores, gib, res_cores, res_gib, group, modern))| {
                let mut vm = Vm::test(&format!("vm{i}"))
                    .on(&format!("n{}", node % count))
                    .demand(cores, gib)
                    .reserve(res_cores, res_gib as f64);
                vm = match group {
                    0 => vm.label("g", "a"),
                    1 => vm.label("g", "b"),
                    _ => vm,
                };
                if modern {
                    vm = vm.model("Icelake-Server");
                }
                vm
            })
            .collect();
        Snapshot::test(ns, vs)
            .threshold(threshold)
            .rule(Rule::anti_affinity("spread-a", Selector::labels(&[("g", "a")])))
            .rule(Rule::vm_node("b-on-ssd", Selector::labels(&[("g", "b")]), Selector::labels(&[("disk", "ssd")])))
    })
}

/// Final node of every VM if the whole plan (deferred moves too) is carried out.
fn after(snap: &Snapshot, plan: &Plan) -> BTreeMap<String, Option<String>> {
    let mut at: BTreeMap<String, Option<String>> = snap.vms.iter().map(|v| (v.name.clone(), v.node.clone())).collect();
    for p in &plan.placements {
        at.insert(p.vm.clone(), Some(p.node.clone()));
    }
    for m in &plan.moves {
        at.insert(m.vm.clone(), Some(m.to.clone()));
    }
    at
}

/// Hard rules, CPU models and reservations that a placement breaks, in words.
fn violations(snap: &Snapshot, at: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut out = Vec::new();
    let node = |name: &str| snap.nodes.iter().find(|n| n.name == name).expect("known node");
    let mut res: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for vm in &snap.vms {
        let Some(Some(n)) = at.get(&vm.name) else { continue };
        if !vm.cpu_requirement.allows(node(n)) {
            out.push(format!("{} on {n} lacks its CPU model", vm.name));
        }
        let e = res.entry(n.as_str()).or_default();
        e.0 += vm.cpu.reservation;
        e.1 += vm.memory.reservation;
    }
    for (n, (c, m)) in &res {
        let cap = node(n).capacity;
        if *c > cap.cpu_millis || *m > cap.memory_bytes {
            out.push(format!("reservations exceed capacity on {n}"));
        }
    }
    for rule in snap.rules.iter().filter(|r| r.enforcement == kubedrs_engine::Enforcement::Required) {
        let members: Vec<&Vm> = snap.vms.iter().filter(|v| rule.vm_selector().matches(&v.labels)).collect();
        let placed: Vec<&str> = members.iter().filter_map(|v| at[&v.name].as_deref()).collect();
        match &rule.kind {
            RuleKind::VMAntiAffinity { .. } => {
                let mut seen = std::collections::BTreeSet::new();
                if !placed.iter().all(|n| seen.insert(*n)) {
                    out.push(format!("{} broken", rule.name));
                }
            }
            RuleKind::VMAffinity { .. } => {
                if placed.windows(2).any(|w| w[0] != w[1]) {
                    out.push(format!("{} broken", rule.name));
                }
            }
            RuleKind::VMNodeAffinity { node_selector, .. } => {
                if placed.iter().any(|n| !node_selector.matches(&node(n).labels)) {
                    out.push(format!("{} broken", rule.name));
                }
            }
        }
    }
    out
}

/// Is there any assignment of the maintenance node's VMs to the other nodes that breaks nothing?
fn evacuation_feasible(snap: &Snapshot) -> bool {
    let leaving: Vec<&str> =
        snap.vms.iter().filter(|v| v.node.as_deref() == Some("n0")).map(|v| v.name.as_str()).collect();
    let targets: Vec<&str> =
        snap.nodes.iter().filter(|n| n.state == NodeState::Ready).map(|n| n.name.as_str()).collect();
    let base: BTreeMap<String, Option<String>> = snap.vms.iter().map(|v| (v.name.clone(), v.node.clone())).collect();
    let total = targets.len().pow(leaving.len() as u32);
    (0..total).any(|mut code| {
        let mut at = base.clone();
        for vm in &leaving {
            at.insert(vm.to_string(), Some(targets[code % targets.len()].to_string()));
            code /= targets.len();
        }
        violations(snap, &at).is_empty()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    #[test]
    fn no_plan_breaks_what_held(snap in pool(false)) {
        let before = violations(&snap, &after(&snap, &Plan::default()));
        let plan = kubedrs_engine::plan(&snap).unwrap();
        let now = violations(&snap, &after(&snap, &plan));
        for v in &now {
            prop_assert!(before.contains(v), "plan broke: {v}\n{plan:#?}");
        }
    }

    #[test]
    fn evacuation_empties_the_node_whenever_possible(snap in pool(true)) {
        // Only pools whose other nodes are sound: the oracle answers for the evacuation alone.
        let mut others = after(&snap, &Plan::default());
        others.values_mut().filter(|n| n.as_deref() == Some("n0")).for_each(|n| *n = None);
        prop_assume!(violations(&snap, &others).is_empty());
        let plan = kubedrs_engine::plan(&snap).unwrap();
        let at = after(&snap, &plan);
        let emptied = at.values().all(|n| n.as_deref() != Some("n0"));
        prop_assert_eq!(emptied, evacuation_feasible(&snap), "plan: {:#?}", plan);
        let before = violations(&snap, &after(&snap, &Plan::default()));
        for v in violations(&snap, &at) {
            prop_assert!(before.contains(&v), "plan broke: {v}");
        }
    }

    #[test]
    fn balancing_never_raises_imbalance(mut snap in pool(false)) {
        snap.rules.clear();
        for vm in &mut snap.vms {
            vm.cpu_requirement = kubedrs_engine::CpuRequirement::Any;
        }
        let plan = kubedrs_engine::plan(&snap).unwrap();
        prop_assume!(plan.moves.iter().all(|m| m.reason == kubedrs_engine::Reason::Balance));
        prop_assert!(plan.imbalance_after <= plan.imbalance_before + 1e-9, "{} -> {}", plan.imbalance_before, plan.imbalance_after);
    }

    #[test]
    fn same_snapshot_in_any_order_gives_the_same_plan(snap in pool(false), seed in any::<u64>()) {
        let mut shuffled = snap.clone();
        // A fixed permutation from the seed: rotate and reverse.
        let k = (seed as usize) % shuffled.vms.len();
        shuffled.vms.rotate_left(k);
        if seed % 2 == 0 {
            shuffled.nodes.reverse();
            shuffled.rules.reverse();
        }
        prop_assert_eq!(kubedrs_engine::plan(&snap).unwrap(), kubedrs_engine::plan(&shuffled).unwrap());
    }
}

#[test]
fn memory_of_a_gib_is_what_the_builders_say() {
    assert_eq!(Vm::test("x").memory_size_bytes, 4 * GIB);
}
