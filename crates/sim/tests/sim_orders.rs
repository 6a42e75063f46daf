//! The simulator carries plans out in their order: a move starts only when the moves it waits for have
//! finished and its target has room for its requests. The shipped scenarios of issue 10, each with what it
//! shows.

use kubedrs_sim::{RunResult, Scenario, simulate};
use std::path::Path;

fn run(name: &str) -> RunResult {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios").join(format!("{name}.yaml"));
    let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    simulate(&s, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"))
}

fn completed(r: &RunResult) -> Vec<(&str, &str, &str)> {
    r.migrations
        .iter()
        .filter(|m| m.outcome == "completed")
        .map(|m| (m.vm.as_str(), m.from.as_str(), m.to.as_str()))
        .collect()
}

/// Highest memory load (used memory, migrations in flight counted on their targets) of any node at any step.
fn peak_memory(r: &RunResult) -> f64 {
    r.steps.memory_load.iter().flatten().flatten().copied().fold(0.0, f64::max)
}

fn timeline(r: &RunResult) -> String {
    r.timeline.iter().map(|e| format!("{} {}: {}", e.t, e.kind, e.text)).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_staged_swap_goes_through_the_third_node_one_move_at_a_time() {
    let r = run("staged-swap");
    let done = completed(&r);
    assert_eq!(done.len(), 3, "{}", timeline(&r));
    assert_eq!(done[0].2, "node-3", "the first move stages a VM on node-3: {done:?}");
    let staged = done[0].0;
    let other = if staged == "vm-a" { "vm-b" } else { "vm-a" };
    assert_eq!(done[1].0, other);
    assert_eq!(done[2], (staged, "node-3", if staged == "vm-a" { "node-2" } else { "node-1" }));
    // Each move started after the one before it ended: no target ever held both VMs.
    for w in r.migrations.windows(2) {
        assert!(w[1].started as f64 >= w[0].ended, "{:#?}", r.migrations);
    }
    assert!(peak_memory(&r) <= 1.0, "a node went above its memory: {}", peak_memory(&r));
    assert!(timeline(&r).contains(&format!("after {staged} leaves")), "{}", timeline(&r));
}

#[test]
fn a_swap_with_nowhere_to_stage_is_blocked_and_nothing_moves() {
    let r = run("swap-blocked");
    assert_eq!(r.summary.migrations.started, 0, "{}", timeline(&r));
    assert_eq!(r.summary.blocked_max, 2);
    assert!(peak_memory(&r) <= 1.0);
}

#[test]
fn maintenance_makes_room_first_and_the_node_empties() {
    let r = run("maintenance-make-room");
    let done = completed(&r);
    assert_eq!(done, vec![("app", "node-2", "node-3"), ("db", "node-1", "node-2")], "{}", timeline(&r));
    assert!(r.migrations[1].started as f64 >= r.migrations[0].ended);
    let t = timeline(&r);
    assert!(t.contains("db -> node-2 after app leaves node-2"), "{t}");
    assert!(t.contains("node-1: InMaintenance"), "{t}");
}

#[test]
fn a_group_moves_together() {
    let r = run("group-together");
    let mut done = completed(&r);
    done.sort();
    assert_eq!(done, vec![("app", "node-1", "node-2"), ("cache", "node-1", "node-2")], "{}", timeline(&r));
}

#[test]
fn complementary_hot_spots_trade_vms() {
    let r = run("cpu-memory-swap");
    let done = completed(&r);
    assert!(done.iter().any(|m| m.0.starts_with("cpu") && m.2 == "node-2"), "{}", timeline(&r));
    assert!(done.iter().any(|m| m.0.starts_with("mem") && m.2 == "node-1"), "{}", timeline(&r));
}

#[test]
fn the_cheaper_of_two_equal_moves_is_made() {
    let r = run("cheaper-move");
    let done = completed(&r);
    assert_eq!(done, vec![("b-small", "node-1", "node-2")], "{}", timeline(&r));
}

#[test]
fn a_reservation_fix_moves_the_vm_that_can_leave() {
    let r = run("reservation-fix");
    let done = completed(&r);
    assert_eq!(done, vec![("mobile", "node-1", "node-2")], "{}", timeline(&r));
    assert_eq!(r.summary.blocked_max, 0);
}

/// node-1 and node-2 have 8 GiB free each; the new 12 GiB VM fits only once a VM has left one of them.
const FRAGMENTED: &str = r#"
name: fragmented
duration: 30m
step: 1m
seed: 1
pool:
  migrationThreshold: 1
nodes:
  - {name: node-1, cpu: 16, memory: 16Gi}
  - {name: node-2, cpu: 16, memory: 16Gi}
vms:
  - {name: small-1, vcpus: 1, memory: 4Gi, node: node-1}
  - {name: small-2, vcpus: 1, memory: 4Gi, node: node-1}
  - {name: other, vcpus: 1, memory: 8Gi, node: node-2}
  - {name: new, vcpus: 1, memory: 12Gi}
"#;

#[test]
fn a_new_vm_is_placed_only_once_the_vm_moved_out_of_its_way_has_left() {
    let s = Scenario::parse(Path::new("fragmented.yaml"), FRAGMENTED).unwrap_or_else(|e| panic!("{e}"));
    let r = simulate(&s, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    let t = timeline(&r);
    assert_eq!(r.summary.pending_at_end, 0, "{t}");
    let room = &r.migrations[0];
    assert_eq!((room.reason.as_str(), room.outcome.as_str()), ("placement", "completed"), "{t}");
    let placed = r
        .timeline
        .iter()
        .find(|e| e.kind == "placement" && e.text.contains(&format!("new->{}", room.from)))
        .unwrap_or_else(|| panic!("new is placed on the node the move freed: {t}"));
    assert!(placed.t as f64 >= room.ended, "placed at {} before {} left at {}: {t}", placed.t, room.vm, room.ended);
    assert!(t.contains(&format!("new on {} after {} leaves {}", room.from, room.vm, room.from)), "{t}");
    assert_eq!(r.summary.transit_overcommit_node_minutes, 0.0);
}
