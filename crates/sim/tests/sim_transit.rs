//! Transit overcommit: node-minutes a node spends above its allocatable (requests) or memory while migrations
//! are in transit. A plan carried out in its order keeps it at 0; a policy that ignores the memory its VMs use
//! does not.

use kubedrs_engine::{Move, Plan, Reason, Snapshot};
use kubedrs_sim::policies::{Policy, PolicyError};
use kubedrs_sim::{RunResult, Scenario, simulate, simulate_with};
use std::path::Path;

fn shipped(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios").join(format!("{name}.yaml"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Two VMs requesting 8 GiB each but using 36 GiB, on two 64 GiB nodes.
const HEAVY: &str = r#"
name: heavy-users
duration: 30m
step: 1m
seed: 1
nodes:
  - {name: node-1, cpu: 16, memory: 64Gi}
  - {name: node-2, cpu: 16, memory: 64Gi}
vms:
  - {name: vm-a, vcpus: 2, memory: 40Gi, requests: {memory: 8Gi}, node: node-1, workload: {cpu: 10%, memory: 90%}}
  - {name: vm-b, vcpus: 2, memory: 40Gi, requests: {memory: 8Gi}, node: node-2, workload: {cpu: 10%, memory: 90%}}
"#;

/// Moves vm-a to node-2 at the first pass, whatever node-2 holds: the requests fit, the memory in use does not.
struct Naive;

impl Policy for Naive {
    fn name(&self) -> String {
        "naive".into()
    }

    fn plan(&mut self, snapshot: &Snapshot) -> Result<Plan, PolicyError> {
        let on_1 = snapshot.vms.iter().any(|v| v.name == "vm-a" && v.node.as_deref() == Some("node-1"));
        let moving = !snapshot.in_flight.is_empty();
        let moves = if on_1 && !moving {
            vec![Move {
                vm: "vm-a".into(),
                from: "node-1".into(),
                to: "node-2".into(),
                reason: Reason::Balance,
                goodness: 0.0,
                migration_secs: 60.0,
                recommend_only: false,
                deferred: false,
                why: "naive".into(),
                after: vec![],
                waits: String::new(),
            }]
        } else {
            vec![]
        };
        Ok(Plan { moves, ..Plan::default() })
    }
}

fn overcommit(r: &RunResult) -> f64 {
    r.summary.transit_overcommit_node_minutes
}

#[test]
fn a_migration_onto_a_node_whose_memory_it_overfills_counts_as_transit_overcommit() {
    let s = Scenario::parse(Path::new("heavy.yaml"), HEAVY).unwrap_or_else(|e| panic!("{e}"));
    let naive = simulate_with(&s, &mut Naive, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    assert!(naive.summary.migrations.started >= 1, "{:#?}", naive.timeline);
    assert!(overcommit(&naive) >= 1.0, "node-2 held 72 GiB of 64 while vm-a was in transit: {}", overcommit(&naive));
    // kubedrs sees the memory in use and plans nothing of the kind.
    let kubedrs = simulate(&s, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(overcommit(&kubedrs), 0.0);
}

#[test]
fn plans_carried_out_in_their_order_never_overcommit_in_transit() {
    for name in ["staged-swap", "maintenance-make-room", "group-together", "cpu-memory-swap", "reservation-fix"] {
        let r = simulate(&shipped(name), &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.summary.migrations.completed > 0, "{name}");
        assert_eq!(overcommit(&r), 0.0, "{name}");
    }
}
