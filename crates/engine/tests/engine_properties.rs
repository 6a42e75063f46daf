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

/// A random pool: 3-4 nodes of two CPU generations, 2-9 VMs with labels a/b/c, anti-affinity on `a`,
/// a VM-node rule on `b`, affinity on `c`, random demands and reservations, node 0 possibly in maintenance.
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
                    2 => vm.label("g", "c"),
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
            .rule(Rule::affinity("c-together", Selector::labels(&[("g", "c")])))
    })
}

/// A random pool as [`pool`], with 0-3 new VMs waiting for a node (reservations of 2-12 GiB, so that a
/// fragmented pool sometimes needs a VM moved out of the way first).
fn pool_with_new(maintenance: bool) -> impl Strategy<Value = Snapshot> {
    let new = prop::collection::vec((0.1..2.0f64, 2u64..=12, any::<bool>()), 0..=3);
    (pool(maintenance), new).prop_map(|(mut snap, new)| {
        for (i, &(cores, gib, spread)) in new.iter().enumerate() {
            let mut vm = Vm::test(&format!("new{i}")).demand(cores, gib as f64 * 0.5).reserve(cores, gib as f64);
            if spread {
                vm = vm.label("g", "a");
            }
            snap.vms.push(vm);
        }
        snap
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
    let mut res: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for vm in &snap.vms {
        let Some(Some(n)) = at.get(&vm.name) else { continue };
        if !vm.cpu_requirement.allows(node(n)) {
            out.push(format!("{} on {n} lacks its CPU model", vm.name));
        }
        let e = res.entry(n.as_str()).or_default();
        e.0 += vm.cpu.reservation;
        e.1 += vm.memory.reservation;
        e.2 += in_use(vm);
    }
    for (n, (c, m, u)) in &res {
        let cap = node(n).capacity;
        if *c > cap.cpu_millis || *m > cap.memory_bytes {
            out.push(format!("reservations exceed capacity on {n}"));
        }
        if *u > cap.memory_bytes {
            out.push(format!("memory in use exceeds capacity on {n}"));
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

/// Memory a VM holds on its node: its request, or what it uses when that is more (at most its limit).
fn in_use(vm: &Vm) -> u64 {
    vm.memory.reservation.max(vm.demand.memory_bytes.min(vm.memory.limit.unwrap_or(u64::MAX)))
}

/// Violations that hold at an instant (affinity is checked on the end state only: a group moves one VM at a
/// time, so it is split while it moves).
fn instant_violations(snap: &Snapshot, at: &BTreeMap<String, Option<String>>) -> Vec<String> {
    violations(snap, at).into_iter().filter(|v| !v.starts_with("c-together")).collect()
}

/// Is there a sequence of single moves, one at a time, each to a ready node with room for the VM beside what
/// is there and breaking nothing that held, that empties n0: every VM on n0 moves once, and at most two other
/// VMs move once out of the way? The end state must break nothing.
fn evacuation_feasible(snap: &Snapshot) -> bool {
    let leaving: Vec<&str> =
        snap.vms.iter().filter(|v| v.node.as_deref() == Some("n0")).map(|v| v.name.as_str()).collect();
    let targets: Vec<&str> =
        snap.nodes.iter().filter(|n| n.state == NodeState::Ready).map(|n| n.name.as_str()).collect();
    let base: BTreeMap<String, Option<String>> = snap.vms.iter().map(|v| (v.name.clone(), v.node.clone())).collect();
    let initial = instant_violations(snap, &base);
    let mut seen = std::collections::HashSet::new();
    #[allow(clippy::too_many_arguments)]
    fn go(
        snap: &Snapshot,
        at: &mut BTreeMap<String, Option<String>>,
        moved: &mut std::collections::BTreeSet<String>,
        extras: usize,
        leaving: &[&str],
        targets: &[&str],
        initial: &[String],
        seen: &mut std::collections::HashSet<String>,
    ) -> bool {
        if leaving.iter().all(|v| moved.contains(*v)) {
            return violations(snap, at).is_empty();
        }
        let key = format!("{at:?}{moved:?}");
        if !seen.insert(key) {
            return false;
        }
        for vm in &snap.vms {
            let is_leaving = leaving.contains(&vm.name.as_str());
            if moved.contains(&vm.name) || (!is_leaving && extras >= 2) || !vm.live_migratable {
                continue;
            }
            let Some(from) = at[&vm.name].clone() else { continue };
            for &t in targets {
                if t == from {
                    continue;
                }
                // Room beside what is on t now.
                let node = snap.nodes.iter().find(|n| n.name == t).expect("node");
                let on: Vec<&Vm> = snap.vms.iter().filter(|v| at[&v.name].as_deref() == Some(t)).collect();
                let cpu: u64 = on.iter().map(|v| v.cpu.reservation).sum::<u64>() + vm.cpu.reservation;
                let mem: u64 = on.iter().map(|v| v.memory.reservation).sum::<u64>() + vm.memory.reservation;
                let used: u64 = on.iter().map(|v| in_use(v)).sum::<u64>() + in_use(vm);
                if cpu > node.capacity.cpu_millis
                    || mem > node.capacity.memory_bytes
                    || used > node.capacity.memory_bytes
                {
                    continue;
                }
                at.insert(vm.name.clone(), Some(t.to_string()));
                let ok = instant_violations(snap, at).iter().all(|v| initial.contains(v));
                if ok {
                    moved.insert(vm.name.clone());
                    let found = go(snap, at, moved, extras + usize::from(!is_leaving), leaving, targets, initial, seen);
                    moved.remove(&vm.name);
                    if found {
                        at.insert(vm.name.clone(), Some(from.clone()));
                        return true;
                    }
                }
                at.insert(vm.name.clone(), Some(from.clone()));
            }
        }
        false
    }
    let mut at = base.clone();
    go(snap, &mut at, &mut Default::default(), 0, &leaving, &targets, &initial, &mut seen)
}

/// An executor written for the test, independent of the planner: carries the plan out in a random order that
/// respects every move's `after` (starting and finishing migrations in a random interleaving, so that moves
/// with nothing between them run at the same time), with a VM counted on both nodes while it migrates. At
/// every start it checks that the target's requests stay within allocatable and its memory in use within
/// capacity, that the VM is where the move starts, and that nothing breaks that held (rules, CPU models);
/// at the end, that nothing is broken that held, affinity included. New VMs are bound in the same interleaving
/// once every move of the VMs their placement names has finished, and their node must have room for them
/// then. Returns where the VMs end.
fn execute(snap: &Snapshot, plan: &Plan, seed: u64) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut rng = kubedrs_engine::build::SplitMix::new(seed);
    let base: BTreeMap<String, Option<String>> = snap.vms.iter().map(|v| (v.name.clone(), v.node.clone())).collect();
    let initial = instant_violations(snap, &base);
    let initial_all = violations(snap, &base);
    let vm = |name: &str| snap.vms.iter().find(|v| v.name == name).expect("vm");
    let node = |name: &str| snap.nodes.iter().find(|n| n.name == name).expect("node");
    // Dependencies: each name is the last move of that VM listed before.
    let mut deps: Vec<Vec<usize>> = Vec::new();
    for (i, m) in plan.moves.iter().enumerate() {
        let mut d = Vec::new();
        for a in &m.after {
            let j = plan.moves[..i]
                .iter()
                .rposition(|p| &p.vm == a)
                .ok_or(format!("{} waits for {a}, not listed before", m.vm))?;
            d.push(j);
        }
        deps.push(d);
    }
    // A placement waits for every move of the VMs it names.
    let mut place_deps: Vec<Vec<usize>> = Vec::new();
    for p in &plan.placements {
        let mut d = Vec::new();
        for a in &p.after {
            let of: Vec<usize> = (0..plan.moves.len()).filter(|&j| &plan.moves[j].vm == a).collect();
            if of.is_empty() {
                return Err(format!("the placement of {} waits for {a}, which the plan does not move", p.vm));
            }
            d.extend(of);
        }
        place_deps.push(d);
    }
    let mut at = base.clone();
    // 0 waiting, 1 running, 2 done.
    let mut state = vec![0u8; plan.moves.len()];
    let mut placed = vec![false; plan.placements.len()];
    loop {
        let startable: Vec<usize> =
            (0..plan.moves.len()).filter(|&i| state[i] == 0 && deps[i].iter().all(|&j| state[j] == 2)).collect();
        let running: Vec<usize> = (0..plan.moves.len()).filter(|&i| state[i] == 1).collect();
        let bindable: Vec<usize> = (0..plan.placements.len())
            .filter(|&i| !placed[i] && place_deps[i].iter().all(|&j| state[j] == 2))
            .collect();
        if startable.is_empty() && running.is_empty() && bindable.is_empty() {
            break;
        }
        let pick = rng.below((startable.len() + running.len() + bindable.len()) as u64) as usize;
        // What a node holds now: VMs there and VMs on their way there.
        let holds = |at: &BTreeMap<String, Option<String>>, state: &[u8], n: &str| -> (u64, u64, u64) {
            let present: Vec<&Vm> = snap
                .vms
                .iter()
                .filter(|v| {
                    at[&v.name].as_deref() == Some(n)
                        || (0..plan.moves.len())
                            .any(|j| state[j] == 1 && plan.moves[j].vm == v.name && plan.moves[j].to == n)
                })
                .collect();
            (
                present.iter().map(|v| v.cpu.reservation).sum(),
                present.iter().map(|v| v.memory.reservation).sum(),
                present.iter().map(|v| in_use(v)).sum(),
            )
        };
        let over = |(cpu, mem, used): (u64, u64, u64), n: &str| {
            let c = node(n).capacity;
            cpu > c.cpu_millis || mem > c.memory_bytes || used > c.memory_bytes
        };
        if pick >= startable.len() + running.len() {
            // Bind a new VM: its node must have room for it now, and no rule may break.
            let i = bindable[pick - startable.len() - running.len()];
            let p = &plan.placements[i];
            let v = vm(&p.vm);
            let (cpu, mem, used) = holds(&at, &state, &p.node);
            let with = (cpu + v.cpu.reservation, mem + v.memory.reservation, used + in_use(v));
            if over(with, &p.node) {
                return Err(format!("placing {} on {}: the node holds {with:?} with it", p.vm, p.node));
            }
            placed[i] = true;
            at.insert(p.vm.clone(), Some(p.node.clone()));
            for v in instant_violations(snap, &at) {
                if !initial.contains(&v) {
                    return Err(format!("placing {} on {} breaks: {v}", p.vm, p.node));
                }
            }
            continue;
        }
        if pick >= startable.len() {
            let i = running[pick - startable.len()];
            state[i] = 2;
            at.insert(plan.moves[i].vm.clone(), Some(plan.moves[i].to.clone()));
            continue;
        }
        let i = startable[pick];
        let m = &plan.moves[i];
        if at[&m.vm].as_deref() != Some(m.from.as_str()) || running.iter().any(|&j| plan.moves[j].vm == m.vm) {
            return Err(format!("move {i} of {} starts while the VM is not on {}", m.vm, m.from));
        }
        state[i] = 1;
        // What the target holds: VMs there, VMs on their way there (this one included).
        let (cpu, mem, used) = holds(&at, &state, &m.to);
        if over((cpu, mem, used), &m.to) {
            return Err(format!(
                "{} -> {}: the target holds cpu {cpu}, memory requests {mem}, in use {used}",
                m.vm, m.to
            ));
        }
        // The VM counts on its target from now on (and on its source, which only loses): rules and models.
        let mut seen = at.clone();
        seen.insert(m.vm.clone(), Some(m.to.clone()));
        for v in instant_violations(snap, &seen) {
            if !initial.contains(&v) {
                return Err(format!("{} -> {} breaks: {v}", m.vm, m.to));
            }
        }
    }
    if let Some(i) = state.iter().position(|&s| s != 2) {
        return Err(format!("move {i} never became startable"));
    }
    if let Some(i) = placed.iter().position(|&p| !p) {
        return Err(format!("the placement of {} never became possible", plan.placements[i].vm));
    }
    for v in violations(snap, &at) {
        if !initial_all.contains(&v) {
            return Err(format!("the plan ends breaking: {v}"));
        }
    }
    Ok(at)
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
    fn every_order_the_plan_allows_keeps_every_node_within_its_room(snap in pool_with_new(false), maintenance in any::<bool>(), seed in any::<u64>()) {
        let mut snap = snap;
        if maintenance {
            snap.nodes[0].state = NodeState::EnteringMaintenance;
        }
        let plan = kubedrs_engine::plan(&snap).unwrap();
        let mut ends = Vec::new();
        for k in 0..6u64 {
            match execute(&snap, &plan, seed.wrapping_add(k)) {
                Ok(at) => ends.push(at),
                Err(e) => prop_assert!(false, "{e}\n{snap:#?}\n{plan:#?}"),
            }
        }
        // Whatever the order, the pool ends where the plan says.
        prop_assert!(ends.iter().all(|e| *e == after(&snap, &plan)));
    }

    #[test]
    fn evacuation_empties_the_node_whenever_some_order_can(snap in pool(true)) {
        // Only pools whose other nodes are sound: the oracle answers for the evacuation alone.
        let mut others = after(&snap, &Plan::default());
        others.values_mut().filter(|n| n.as_deref() == Some("n0")).for_each(|n| *n = None);
        prop_assume!(violations(&snap, &others).is_empty());
        let plan = kubedrs_engine::plan(&snap).unwrap();
        let at = after(&snap, &plan);
        let emptied = at.values().all(|n| n.as_deref() != Some("n0"));
        if evacuation_feasible(&snap) {
            prop_assert!(emptied, "some order empties n0, the plan does not: {:#?}\n{:#?}", snap, plan);
        }
        if let Err(e) = execute(&snap, &plan, 7) {
            prop_assert!(false, "{e}\n{plan:#?}");
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
