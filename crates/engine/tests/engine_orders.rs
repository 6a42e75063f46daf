//! Plans a real cluster can carry out, on small pools written by hand: the order of moves, staged swaps,
//! room made for mandatory moves, groups moved together, the cheaper of equal moves, reservation fixes.

use kubedrs_engine::{self, BlockedReason, Move, Node, NodeState, Plan, Reason, Rule, Selector, Snapshot, Vm};
use std::collections::BTreeMap;

const GIB: u64 = 1 << 30;

/// A VM of `gib` GiB whose memory is all requested (as KubeVirt does) and mostly used.
fn big(name: &str, node: &str, gib: u64) -> Vm {
    Vm::test(name).on(node).memory_gib(gib).reserve(0.5, gib as f64).demand(1.0, gib as f64 * 0.75)
}

fn pin(name: &str, vm_label: &str, node: &str) -> Rule {
    Rule::vm_node(name, Selector::labels(&[("pin", vm_label)]), Selector::labels(&[("name", node)]))
}

fn named(n: &str) -> Node {
    Node::test(n).label("name", n)
}

/// Carries the moves out one at a time in list order, checking that every `after` names an earlier move
/// and that each target has room for the VM's requests beside what is there; returns where VMs end.
fn carry_out(snap: &Snapshot, plan: &Plan) -> BTreeMap<String, String> {
    let mut at: BTreeMap<String, String> =
        snap.vms.iter().filter_map(|v| Some((v.name.clone(), v.node.clone()?))).collect();
    for (i, m) in plan.moves.iter().enumerate() {
        for a in &m.after {
            assert!(plan.moves[..i].iter().any(|p| &p.vm == a), "{} waits for {a}, not listed before it", m.vm);
        }
        assert_eq!(at.get(&m.vm), Some(&m.from), "{} is not on {} when its move starts", m.vm, m.from);
        let node = snap.nodes.iter().find(|n| n.name == m.to).expect("known node");
        let on: Vec<&Vm> = snap.vms.iter().filter(|v| at.get(&v.name) == Some(&m.to) || v.name == m.vm).collect();
        let mem: u64 = on.iter().map(|v| v.memory.reservation).sum();
        assert!(mem <= node.capacity.memory_bytes, "{} does not fit on {} when it starts: {plan:#?}", m.vm, m.to);
        at.insert(m.vm.clone(), m.to.clone());
    }
    at
}

fn moves_of<'a>(plan: &'a Plan, vm: &str) -> Vec<&'a Move> {
    plan.moves.iter().filter(|m| m.vm == vm).collect()
}

/// Two 40 GiB VMs pinned to each other's 64 GiB node.
fn swap(third: Option<Node>) -> Snapshot {
    let mut nodes = vec![named("n1").gib(64), named("n2").gib(64)];
    nodes.extend(third);
    Snapshot::test(nodes, vec![big("vm-a", "n1", 40).label("pin", "a"), big("vm-b", "n2", 40).label("pin", "b")])
        .rule(pin("a-on-n2", "a", "n2"))
        .rule(pin("b-on-n1", "b", "n1"))
}

#[test]
fn a_swap_through_full_nodes_is_staged_on_a_node_with_room() {
    let snap = swap(Some(named("n3").gib(64)));
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(plan.blocked.is_empty(), "{plan:#?}");
    assert_eq!(plan.moves.len(), 3, "one VM goes through n3: {:#?}", plan.moves);
    let at = carry_out(&snap, &plan);
    assert_eq!(at["vm-a"], "n2");
    assert_eq!(at["vm-b"], "n1");
    // Only the staging hop can start now; the others say what they wait for.
    assert!(plan.moves[0].after.is_empty() && plan.moves[0].to == "n3", "{:#?}", plan.moves);
    assert!(plan.moves[1..].iter().all(|m| !m.after.is_empty() && m.waits.starts_with("after ")));
    let staged = &plan.moves[0].vm;
    let other = if staged == "vm-a" { "vm-b" } else { "vm-a" };
    let second = moves_of(&plan, other)[0];
    assert_eq!(second.after, vec![staged.clone()]);
    assert!(second.waits.contains(&format!("after {staged} leaves")), "{}", second.waits);
    assert!(plan.moves[0].why.contains("staged on n3"), "{}", plan.moves[0].why);
}

#[test]
fn a_swap_with_no_node_to_stage_on_is_blocked_naming_the_cycle() {
    let plan = kubedrs_engine::plan(&swap(None)).unwrap();
    assert!(plan.moves.is_empty(), "{:#?}", plan.moves);
    assert_eq!(plan.blocked.len(), 2, "{plan:#?}");
    for b in &plan.blocked {
        assert_eq!(b.reason, BlockedReason::Cycle { vms: vec!["vm-a".into(), "vm-b".into()] }, "{b:#?}");
        assert!(b.why.contains("vm-a n1 -> n2") && b.why.contains("vm-b n2 -> n1"), "{}", b.why);
    }
}

#[test]
fn a_third_node_too_full_to_stage_on_leaves_the_swap_blocked() {
    let snap = swap(Some(named("n3").gib(64)));
    let mut snap = snap;
    snap.vms.push(big("filler", "n3", 40));
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(plan.moves.iter().all(|m| m.vm == "filler" || m.reason == Reason::Balance), "{:#?}", plan.moves);
    assert!(plan.blocked.iter().any(|b| matches!(b.reason, BlockedReason::Cycle { .. })), "{plan:#?}");
}

/// n1 goes into maintenance; its VM may only run on n2, which is full until `free` moves to n3.
fn needs_room() -> Snapshot {
    let nodes = vec![named("n1").gib(64).maintenance(), named("n2").gib(64), named("n3").gib(64)];
    let vms = vec![big("pinned", "n1", 40).label("pin", "p"), big("free", "n2", 30)];
    Snapshot::test(nodes, vms).rule(pin("p-on-n2", "p", "n2")).threshold(1)
}

#[test]
fn maintenance_moves_another_vm_out_of_the_way_first() {
    let snap = needs_room();
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(plan.blocked.is_empty(), "{plan:#?}");
    assert_eq!(plan.moves.len(), 2, "{:#?}", plan.moves);
    let (first, second) = (&plan.moves[0], &plan.moves[1]);
    assert_eq!((first.vm.as_str(), first.from.as_str(), first.to.as_str()), ("free", "n2", "n3"));
    assert_eq!((second.vm.as_str(), second.to.as_str()), ("pinned", "n2"));
    assert_eq!(second.after, vec!["free".to_string()]);
    assert_eq!(second.waits, "after free leaves n2");
    assert!(first.why.contains("out of the way") && first.why.contains("pinned"), "{}", first.why);
    let at = carry_out(&snap, &plan);
    assert!(at.values().all(|n| n != "n1"));
}

#[test]
fn balancing_in_the_same_pass_does_not_undo_the_room_made() {
    let mut snap = needs_room().threshold(5);
    snap.vms.push(big("other", "n3", 10));
    let plan = kubedrs_engine::plan(&snap).unwrap();
    let at = carry_out(&snap, &plan);
    assert_eq!(at["pinned"], "n2");
    assert_eq!(at["free"], "n3", "{plan:#?}");
}

#[test]
fn maintenance_that_needs_two_vms_moved_moves_the_cheapest_pair() {
    let nodes = vec![named("n1").gib(64).maintenance(), named("n2").gib(64), named("n3").gib(64)];
    let vms = vec![
        big("pinned", "n1", 40).label("pin", "p"),
        big("x-small", "n2", 12),
        big("y-small", "n2", 12),
        big("z-huge", "n2", 30),
    ];
    let snap = Snapshot::test(nodes, vms).rule(pin("p-on-n2", "p", "n2")).threshold(1);
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(plan.blocked.is_empty(), "{plan:#?}");
    // Moving z-huge alone would make room too (64 - 24 = 40), and it is one move: fewer moves first.
    let aside: Vec<&str> = plan.moves.iter().filter(|m| m.vm != "pinned").map(|m| m.vm.as_str()).collect();
    assert_eq!(aside, vec!["z-huge"], "{:#?}", plan.moves);
    carry_out(&snap, &plan);
}

#[test]
fn a_required_group_moves_together_when_one_member_must_move() {
    let nodes = vec![named("n1"), named("n2").label("disk", "ssd")];
    let vms = vec![
        Vm::test("app").on("n1").label("pair", "shop").label("tier", "db"),
        Vm::test("cache").on("n1").label("pair", "shop"),
    ];
    let snap = Snapshot::test(nodes, vms)
        .rule(Rule::affinity("app-with-cache", Selector::labels(&[("pair", "shop")])))
        .rule(Rule::vm_node("db-on-ssd", Selector::labels(&[("tier", "db")]), Selector::labels(&[("disk", "ssd")])));
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(plan.blocked.is_empty() && plan.rule_notes.is_empty(), "{plan:#?}");
    let at = carry_out(&snap, &plan);
    assert_eq!((at["app"].as_str(), at["cache"].as_str()), ("n2", "n2"), "{plan:#?}");
    let cache = moves_of(&plan, "cache")[0];
    assert!(cache.why.contains("group"), "{}", cache.why);
}

#[test]
fn a_group_leaves_a_node_in_maintenance_together_when_its_partner_has_no_room() {
    let nodes = vec![named("n1").gib(64).maintenance(), named("n2").gib(64), named("n3").gib(64)];
    let vms = vec![
        big("app", "n1", 20).label("pair", "shop"),
        big("cache", "n2", 20).label("pair", "shop"),
        big("fill", "n2", 30),
    ];
    let snap = Snapshot::test(nodes, vms)
        .rule(Rule::affinity("app-with-cache", Selector::labels(&[("pair", "shop")])))
        .threshold(1);
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(plan.blocked.is_empty(), "{plan:#?}");
    let at = carry_out(&snap, &plan);
    assert_eq!(at["app"], at["cache"], "{plan:#?}");
    assert_ne!(at["app"], "n1");
}

#[test]
fn a_reservation_fix_passes_over_the_pinned_vm_for_one_that_can_leave() {
    let nodes = vec![named("n1").gib(64), named("n2").gib(64)];
    let vms = vec![big("pinned", "n1", 48).label("pin", "p"), big("mobile", "n1", 24)];
    let snap = Snapshot::test(nodes, vms).rule(pin("p-on-n1", "p", "n1")).threshold(1);
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(plan.blocked.is_empty(), "{plan:#?}");
    assert_eq!(plan.moves.len(), 1, "{:#?}", plan.moves);
    assert_eq!((plan.moves[0].vm.as_str(), plan.moves[0].reason), ("mobile", Reason::Reservation));
}

#[test]
fn a_reservation_fix_that_cannot_happen_names_the_pin() {
    let nodes = vec![named("n1").gib(64), named("n2").gib(64)];
    let vms = vec![big("pinned", "n1", 48).label("pin", "p"), big("also", "n1", 24).label("pin", "p")];
    let snap = Snapshot::test(nodes, vms).rule(pin("p-on-n1", "p", "n1")).threshold(1);
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(plan.moves.is_empty(), "{:#?}", plan.moves);
    assert!(!plan.blocked.is_empty());
    for b in &plan.blocked {
        assert_eq!(b.reason, BlockedReason::Rule { rule: "p-on-n1".into() }, "{b:#?}");
    }
}

#[test]
fn of_two_equal_moves_the_cheaper_migration_is_planned() {
    let nodes = vec![named("n1"), named("n2")];
    let mut vms: Vec<Vm> = (0..4).map(|i| Vm::test(&format!("busy{i}")).on("n1").demand(3.0, 2.0)).collect();
    vms.push(Vm::test("a-large").on("n1").memory_gib(50).demand(3.0, 2.0));
    vms.push(Vm::test("b-small").on("n1").memory_gib(10).demand(3.0, 2.0));
    let mut snap = Snapshot::test(nodes, vms).threshold(3);
    snap.pool.concurrency.per_node_outbound = 1;
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(!plan.moves.is_empty(), "{plan:#?}");
    // The four busy VMs cost 4 GiB each: the cheapest; between the two named ones, 10 GiB beats 50 GiB.
    assert!(plan.moves.iter().all(|m| m.vm != "a-large"), "{:#?}", plan.moves);
}

#[test]
fn the_cheaper_of_two_equal_vms_wins_whatever_the_names() {
    let nodes = vec![named("n1"), named("n2")];
    let vms = vec![
        Vm::test("a-large").on("n1").memory_gib(50).demand(6.0, 2.0),
        Vm::test("b-small").on("n1").memory_gib(10).demand(6.0, 2.0),
        Vm::test("c").on("n1").demand(6.0, 2.0).memory_gib(60),
    ];
    let mut snap = Snapshot::test(nodes, vms).threshold(3);
    snap.pool.concurrency.per_node_outbound = 1;
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert_eq!(plan.moves.len(), 1, "{plan:#?}");
    assert_eq!(plan.moves[0].vm, "b-small", "{:#?}", plan.moves);
}

#[test]
fn in_flight_migrations_count_on_both_nodes_until_done() {
    // vm-m is migrating n1 -> n2 and holds 40 GiB on both; n2 cannot take another 40 GiB VM now.
    let nodes =
        vec![named("n1").gib(64).state(NodeState::EnteringMaintenance), named("n2").gib(64), named("n3").gib(48)];
    let vms = vec![big("vm-m", "n1", 30), big("leaving", "n1", 40)];
    let mut snap = Snapshot::test(nodes, vms).threshold(1);
    snap.in_flight.push(kubedrs_engine::InFlight { vm: "vm-m".into(), source: "n1".into(), target: "n2".into() });
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert_eq!(plan.moves.len(), 1, "{plan:#?}");
    assert_eq!(plan.moves[0].to, "n3");
}

#[test]
fn a_cpu_hot_node_and_a_memory_hot_node_trade_vms() {
    // n1 is short of CPU with little memory used; n2 is short of memory with little CPU used.
    let nodes = vec![named("n1").cores(16).gib(64), named("n2").cores(16).gib(64)];
    let mut vms = Vec::new();
    for i in 0..4 {
        vms.push(Vm::test(&format!("cpu{i}")).on("n1").vcpus(8).memory_gib(4).reserve(0.8, 4.0).demand(5.0, 3.0));
        vms.push(Vm::test(&format!("mem{i}")).on("n2").vcpus(1).memory_gib(18).reserve(0.1, 14.0).demand(0.5, 17.0));
    }
    let snap = Snapshot::test(nodes, vms).threshold(3);
    let before = kubedrs_engine::plan(&snap.clone().threshold(1)).unwrap();
    let short = |p: &Plan| p.loads.iter().filter(|l| l.cpu > 1.0 || l.memory > 1.0).count();
    assert_eq!(short(&before), 2, "{:#?}", before.loads);
    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(!plan.moves.is_empty(), "{plan:#?}");
    carry_out(&snap, &plan);
    assert!(short(&plan) < 2, "{:#?}\n{:#?}", plan.moves, plan.loads);
}

#[test]
fn memory_in_use_above_capacity_is_never_planned() {
    // n2 has room for the requests (1 GiB) but not for the 40 GiB the VM uses.
    let nodes = vec![named("n1").maintenance(), named("n2").gib(48)];
    let vms =
        vec![Vm::test("user").on("n1").memory_gib(48).reserve(0.2, 1.0).demand(1.0, 40.0), big("there", "n2", 20)];
    let plan = kubedrs_engine::plan(&Snapshot::test(nodes, vms)).unwrap();
    assert!(plan.moves.is_empty(), "{plan:#?}");
    assert_eq!(plan.blocked[0].reason, BlockedReason::NoCapacity);
    let _ = GIB;
}

#[test]
fn a_new_vm_waits_for_the_vm_moved_out_of_its_way() {
    // Two 8 GiB nodes with 4 GiB free each: a 6 GiB VM fits nowhere until a VM leaves one of them.
    let nodes = vec![named("n1").gib(8), named("n2").gib(8)];
    let vms = vec![
        Vm::test("small").on("n1").reserve(0.1, 2.0),
        Vm::test("mid").on("n1").reserve(0.1, 2.0),
        Vm::test("other").on("n2").reserve(0.1, 4.0),
        Vm::test("new").reserve(0.1, 6.0),
    ];
    let plan = kubedrs_engine::plan(&Snapshot::test(nodes, vms).threshold(1)).unwrap();
    assert_eq!(plan.placements.len(), 1, "{plan:#?}");
    let (p, room) = (&plan.placements[0], &plan.moves[0]);
    assert_eq!((p.node.as_str(), room.reason), (room.from.as_str(), Reason::Placement), "{plan:#?}");
    assert_eq!(p.after, vec![room.vm.clone()]);
    assert_eq!(p.waits, format!("after {} leaves {}", room.vm, p.node));
    // A placement that needs nothing moved binds now.
    let roomy = vec![named("n1").gib(16), named("n2").gib(8)];
    let plan =
        kubedrs_engine::plan(&Snapshot::test(roomy, vec![Vm::test("new").reserve(0.1, 6.0)]).threshold(1)).unwrap();
    assert!(plan.placements[0].after.is_empty() && plan.placements[0].waits.is_empty(), "{plan:#?}");
}

/// n1 (64 GiB) holds a 24 GiB VM pinned there and a 36 GiB VM; n2 (64 GiB) two 16 GiB VMs; n3 (32 GiB) one of
/// 8 GiB. The 36 GiB VM fits n3 not at all and n2 not beside 32 GiB; a 16 GiB VM moved to n3 alone makes the
/// pool worse. Only the two together help: a 16 GiB VM to n3, then the 36 GiB VM to n2.
fn chain_pool() -> Snapshot {
    let nodes = vec![named("n1").gib(64), named("n2").gib(64), named("n3").gib(32)];
    let vms = vec![
        big("pinned", "n1", 24).label("pin", "p"),
        big("large", "n1", 36),
        big("mid-1", "n2", 16),
        big("mid-2", "n2", 16),
        big("small", "n3", 8),
    ];
    Snapshot::test(nodes, vms).rule(pin("p-on-n1", "p", "n1")).threshold(4)
}

#[test]
fn two_moves_where_no_single_move_helps() {
    let snap = chain_pool();
    // With room for one migration only, nothing qualifies: no single move helps.
    let mut one = snap.clone();
    one.pool.max_migrations_per_pass = 1;
    let alone = kubedrs_engine::plan(&one).unwrap();
    assert!(alone.moves.is_empty(), "{:#?}", alone.moves);

    let plan = kubedrs_engine::plan(&snap).unwrap();
    assert!(plan.moves.len() >= 2, "{plan:#?}");
    let (first, second) = (&plan.moves[0], &plan.moves[1]);
    assert!(first.vm.starts_with("mid-") && (first.from.as_str(), first.to.as_str()) == ("n2", "n3"), "{first:#?}");
    assert_eq!((second.vm.as_str(), second.from.as_str(), second.to.as_str()), ("large", "n1", "n2"));
    // n2 has room for the large VM only once the first has left.
    assert_eq!(second.after, vec![first.vm.clone()], "{:#?}", plan.moves);
    assert!(plan.moves.iter().all(|m| m.reason == Reason::Balance));
    assert!(
        plan.imbalance_after < plan.imbalance_before - 0.05,
        "{} -> {}",
        plan.imbalance_before,
        plan.imbalance_after
    );
    carry_out(&snap, &plan);
}
