//! Every shipped scenario runs to its end, repeats exactly under the same seed, and shows what it is meant to
//! show with the real engine (maintenance empties the node, the spike is spread, rules are fixed...).

use kubedrs_sim::{RunResult, Scenario, simulate};
use std::path::{Path, PathBuf};

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/scenarios is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn run(name: &str) -> RunResult {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios").join(format!("{name}.yaml"));
    let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    simulate(&s, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"))
}

/// The JSON of a run without its wall-clock figures.
fn deterministic_json(r: &RunResult) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("results serialize");
    v.as_object_mut().expect("an object").remove("timing");
    v
}

#[test]
fn every_shipped_scenario_runs_to_the_end() {
    let files = scenarios();
    assert!(files.len() >= 7, "{files:?}");
    for f in files {
        let s = Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let r = simulate(&s, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.steps.t.len() as u64, s.duration / s.step, "{}", f.display());
        assert_eq!(r.summary.rejected, 0, "{}: the actuator rejected plan entries: {:#?}", f.display(), r.timeline);
        assert_eq!(r.summary.cpu_model_violation_minutes, 0.0, "{}", f.display());
        assert!(r.summary.demand_met.cpu > 0.0 && r.summary.demand_met.cpu <= 1.0);
    }
}

#[test]
fn same_scenario_and_seed_give_identical_results() {
    for name in ["load-spike", "maintenance"] {
        assert_eq!(deterministic_json(&run(name)), deterministic_json(&run(name)), "{name}");
    }
}

#[test]
fn another_seed_changes_the_noise() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios/load-spike.yaml");
    let mut s = Scenario::load(&path).unwrap();
    let a = simulate(&s, &mut |_, _| {}).unwrap();
    s.seed += 1;
    let b = simulate(&s, &mut |_, _| {}).unwrap();
    assert_ne!(a.steps.cpu_load, b.steps.cpu_load);
}

#[test]
fn json_output_has_the_documented_shape() {
    let v = serde_json::to_value(run("load-spike")).unwrap();
    for key in ["scenario", "seed", "summary", "passes", "steps", "migrations", "timeline", "timing"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let summary = &v["summary"];
    for key in ["demandMet", "imbalance", "targetImbalance", "hottestNode", "migrations", "pingPong", "placements"] {
        assert!(summary.get(key).is_some(), "missing summary.{key}");
    }
    for key in ["mean", "p95", "max", "last"] {
        assert!(summary["imbalance"][key].is_number(), "summary.imbalance.{key}");
    }
    let pass = &v["passes"][0];
    for key in ["t", "kind", "imbalanceBefore", "imbalanceAfter", "target", "started", "deferred", "blocked"] {
        assert!(pass.get(key).is_some(), "missing passes[0].{key}");
    }
    let steps = &v["steps"];
    let n = steps["t"].as_array().unwrap().len();
    assert_eq!(steps["cpuLoad"][0].as_array().unwrap().len(), n);
    assert_eq!(steps["cpuMet"].as_array().unwrap().len(), n);
    assert!(v["timing"]["maxDecisionMs"].is_number());
}

// Behaviour of the real engine, seen through the simulator.

#[test]
fn balanced_start_places_everything_and_serves_all_demand() {
    let r = run("balanced-start");
    assert_eq!(r.summary.placements, 24);
    assert_eq!(r.summary.pending_at_end, 0);
    assert!(r.summary.demand_met.cpu > 0.999, "{:?}", r.summary.demand_met);
    assert!(r.summary.imbalance.p95 <= r.summary.target_imbalance.mean, "{:?}", r.summary.imbalance);
}

#[test]
fn load_spike_is_spread_off_the_hot_node() {
    let r = run("load-spike");
    let spike_moves = r.migrations.iter().filter(|m| m.from == "node-1" && m.vm.starts_with("report")).count();
    assert!(spike_moves >= 2, "{:#?}", r.migrations);
    // Once the moves are done, node-1 is no longer short of CPU.
    let node1 = r.steps.nodes.iter().position(|n| n == "node-1").unwrap();
    let at = |t: u64| r.steps.t.iter().position(|x| *x == t).unwrap();
    assert!(r.steps.cpu_load[node1][at(3 * 3600)].unwrap() < 1.0);
    assert!(r.summary.demand_met.cpu > 0.99);
}

#[test]
fn maintenance_empties_the_node_and_it_fills_again() {
    let r = run("maintenance");
    let text: Vec<String> = r.timeline.iter().map(|e| e.text.clone()).collect();
    let in_maint = r.timeline.iter().find(|e| e.text == "node-2: InMaintenance (empty)").expect("node-2 empties");
    assert!(in_maint.t < 3600 + 1800, "evacuated by 01:30: {text:#?}");
    // After 04:00 balancing brings VMs back to node-2.
    assert!(r.migrations.iter().any(|m| m.to == "node-2" && m.started >= 4 * 3600 && m.reason == "balance"));
    // node-4 cannot be emptied: the VM that is not live-migratable keeps it Blocked.
    assert!(
        text.iter().any(|t| t.starts_with("node-4: maintenance Blocked") && t.contains("gpu-passthrough")),
        "{text:#?}"
    );
    assert!(r.summary.migrations.by_reason.get("maintenance").copied().unwrap_or(0) >= 5);
}

#[test]
fn shares_move_entitlement_under_contention() {
    let r = run("shares-contention");
    let g = &r.steps.group_cpu_met;
    let at = |t: u64| r.steps.t.iter().position(|x| *x == t).unwrap();
    let (gold, bronze) = (&g["gold"], &g["bronze"]);
    // Equal shares: equal share of demand met.
    assert!((gold[at(3600)] - bronze[at(3600)]).abs() < 0.01);
    // gold high, bronze low: gold is served, bronze gets a quarter.
    assert!(gold[at(3 * 3600)] > 0.99, "{}", gold[at(3 * 3600)]);
    assert!(bronze[at(3 * 3600)] < 0.3);
    // A reservation is a floor whatever the shares.
    assert!(bronze[at(5 * 3600)] > bronze[at(3 * 3600)] + 0.2);
}

#[test]
fn a_vm_with_a_new_cpu_model_never_lands_on_old_nodes() {
    let r = run("mixed-cpu");
    assert!(r.passes[0].baseline.as_deref() == Some("Haswell-noTSX-IBRS"), "{:?}", r.passes[0].baseline);
    let placed: Vec<&str> = r.timeline.iter().map(|e| e.text.as_str()).filter(|t| t.contains("ml-")).collect();
    assert!(placed.iter().all(|t| !t.contains("ml-1->old") && !t.contains("ml-1->mid")), "{placed:?}");
    assert!(r.migrations.iter().filter(|m| m.vm.starts_with("ml-")).all(|m| m.to.starts_with("new-")));
    assert_eq!(r.summary.cpu_model_violation_minutes, 0.0);
    // The spike is met by moving general VMs off the Icelake nodes.
    assert!(r.migrations.iter().any(|m| m.vm.starts_with("general") && m.from.starts_with("new-")));
}

#[test]
fn broken_rules_are_fixed_at_once_and_stay_fixed() {
    let r = run("rules");
    assert!(r.summary.migrations.by_reason.get("rule").copied().unwrap_or(0) >= 3, "{:#?}", r.migrations);
    // Broken at 00:00 and while the moves run (the longest takes ~75 s): a few VM-minutes, then never again.
    assert!(r.summary.required_rule_violation_minutes <= 6.0, "{}", r.summary.required_rule_violation_minutes);
}

#[test]
fn the_trace_day_runs_on_real_data() {
    let r = run("planetlab-day");
    assert_eq!(r.summary.placements, 96);
    assert!(r.summary.hottest_node.max > r.summary.hottest_node.mean, "the traces move");
    assert!(r.summary.ping_pong <= 2, "{}", r.summary.ping_pong);
}

// Execution semantics of the simulated actuator, on small inline pools.

const HOT: &str = "\
duration: 1h
seed: 9
pool: {automation: AUTOMATION}
nodes:
  - {prefix: node, count: 3, cpu: 16, memory: 128Gi, generation: Skylake}
vms:
  - {prefix: hot, count: 6, vcpus: 4, memory: 8Gi, node: node-1, workload: {cpu: 90%}}
  - {prefix: new, count: 2, vcpus: 2, memory: 4Gi, workload: {cpu: 20%}}
";

fn inline(text: &str) -> RunResult {
    let s = Scenario::parse(Path::new("inline.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    simulate(&s, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn fully_automated_executes_balancing() {
    let r = inline(&HOT.replace("AUTOMATION", "FullyAutomated"));
    assert!(r.summary.migrations.started > 0);
    assert_eq!(r.summary.placements, 2);
}

#[test]
fn partially_automated_places_but_only_recommends_balancing() {
    let r = inline(&HOT.replace("AUTOMATION", "PartiallyAutomated"));
    assert_eq!(r.summary.placements, 2);
    assert_eq!(r.summary.migrations.started, 0);
    assert!(r.summary.recommendations > 0);
}

#[test]
fn manual_executes_nothing() {
    let r = inline(&HOT.replace("AUTOMATION", "Manual"));
    assert_eq!((r.summary.placements, r.summary.migrations.started), (0, 0));
    assert_eq!(r.summary.pending_at_end, 2);
    assert!(r.summary.recommendations > 0);
}

#[test]
fn a_failed_node_s_vms_restart_elsewhere_after_the_delay() {
    let text = "\
duration: 1h
ha: {restartDelay: 5m}
nodes:
  - {prefix: node, count: 3, cpu: 16, memory: 128Gi}
vms:
  - {prefix: vm, count: 4, vcpus: 2, memory: 8Gi, node: node-2}
events:
  - {at: 10m, action: failNode, node: node-2}
";
    let r = inline(text);
    let kinds: Vec<(u64, &str)> = r.timeline.iter().map(|e| (e.t, e.kind)).collect();
    assert!(kinds.contains(&(600, "event")), "{:#?}", r.timeline);
    assert!(kinds.contains(&(900, "ha")), "{:#?}", r.timeline);
    // Every VM that went down is placed again (balancing may have moved one away from node-2 before).
    let down: usize =
        r.timeline.iter().find(|e| e.t == 600).map(|e| e.text.split(' ').nth(3).unwrap().parse().unwrap()).unwrap();
    assert!(down >= 3);
    assert_eq!(r.summary.placements as usize, down, "{:#?}", r.timeline);
    assert_eq!(r.summary.pending_at_end, 0);
    // Down for 5 minutes of the hour: demand not met meanwhile.
    assert!(r.summary.demand_met.cpu < 0.97 && r.summary.demand_met.cpu > 0.85, "{:?}", r.summary.demand_met);
    let node2 = r.steps.nodes.iter().position(|n| n == "node-2").unwrap();
    assert_eq!(*r.steps.cpu_load[node2].last().unwrap(), Some(0.0));
}

#[test]
fn migrations_that_cannot_converge_time_out() {
    let text = "\
duration: 1h
migration: {bandwidth: 256Mi}
nodes:
  - {prefix: node, count: 2, cpu: 16, memory: 128Gi}
vms:
  - {prefix: busy, count: 2, vcpus: 4, memory: 4Gi, dirtyRate: 512Mi, node: node-1}
events:
  - {at: 5m, action: enterMaintenance, node: node-1}
";
    let r = inline(text);
    let m = &r.summary.migrations;
    assert!(m.timed_out >= 2 && m.completed == 0, "{m:?}");
    // 150 s per GiB of guest memory, plus the setup time.
    assert_eq!(r.migrations[0].ended - r.migrations[0].started as f64, 610.0);
    assert!(r.timeline.iter().any(|e| e.text.contains("did not converge")));
}

#[test]
fn chance_failures_follow_the_seed() {
    let text = "\
duration: 2h
seed: 11
migration: {failureProbability: 30%}
nodes:
  - {prefix: node, count: 2, cpu: 16, memory: 128Gi}
vms:
  - {prefix: calm, count: 8, vcpus: 2, memory: 4Gi, node: node-1}
events:
  - {at: 5m, action: enterMaintenance, node: node-1}
";
    let a = inline(text);
    let m = &a.summary.migrations;
    assert!(m.failed > 0 && m.completed >= 8, "{m:?}");
    assert_eq!(deterministic_json(&a), deterministic_json(&inline(text)));
    let other = inline(&text.replace("seed: 11", "seed: 12"));
    assert_ne!(deterministic_json(&a)["migrations"], deterministic_json(&other)["migrations"]);
}

#[test]
fn bitbrains_traces_drive_cpu_and_memory() {
    let text = "\
duration: 6h
step: 5m
nodes:
  - {prefix: node, count: 2, cpu: 32, memory: 128Gi}
vms:
  - {prefix: bb, count: 4, vcpus: 4, memory: 8Gi, workload: {cpu: {bitbrains: {first: 1}}, memory: {bitbrains: {first: 1}}}}
";
    // Anchored in examples/scenarios so that data/traces is found above it, in the repository.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios/inline-bitbrains.yaml");
    let s = Scenario::parse(&path, text).unwrap_or_else(|e| panic!("{e}"));
    let r = simulate(&s, &mut |_, _| {}).unwrap();
    let mem: Vec<f64> = r.steps.memory_load.iter().flatten().flatten().copied().collect();
    assert!(mem.iter().any(|m| *m > 0.0), "memory comes from the trace");
    let cpu: Vec<f64> = r.steps.cpu_load.iter().flatten().flatten().copied().collect();
    assert!(cpu.windows(2).any(|w| w[0] != w[1]), "the trace moves");
}
