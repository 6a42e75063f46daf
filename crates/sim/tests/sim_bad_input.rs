//! A malformed scenario gets an error naming the file, the line (and column), the field and what is allowed;
//! never a panic.

use kubedrs_sim::{Scenario, ScenarioError};
use std::path::Path;

const GOOD: &str = "\
duration: 2h
nodes:
  - prefix: node
    count: 2
    cpu: 16
    memory: 64Gi
vms:
  - prefix: web
    count: 2
    vcpus: 2
    memory: 4Gi
";

fn err(text: &str) -> ScenarioError {
    let e = Scenario::parse(Path::new("bad.yaml"), text).expect_err("should be refused");
    let shown = e.to_string();
    assert!(shown.starts_with("bad.yaml:"), "names the file: {shown}");
    e
}

fn check(e: &ScenarioError, line: usize, field: &str, words: &[&str]) {
    let shown = e.to_string();
    assert_eq!(e.line, Some(line), "{shown}");
    assert_eq!(e.field, field, "{shown}");
    assert!(shown.contains(&format!("bad.yaml:{line}:")), "{shown}");
    for w in words {
        assert!(shown.contains(w), "{shown} should say {w:?}");
    }
}

#[test]
fn the_good_one_parses() {
    Scenario::parse(Path::new("bad.yaml"), GOOD).unwrap();
}

#[test]
fn yaml_syntax_error() {
    let e = err(&GOOD.replace("    count: 2\n    cpu: 16", "    count: 2\n   cpu: [16"));
    assert!(e.line.is_some() && e.column.is_some(), "{e}");
}

#[test]
fn unknown_field_lists_the_allowed_ones() {
    let e = err(&format!("{GOOD}    colour: blue\n"));
    check(&e, 12, "vms[0]", &["unknown field `colour`", "vcpus", "workload"]);
}

#[test]
fn negative_quantity() {
    let e = err(&GOOD.replace("memory: 4Gi", "memory: -4Gi"));
    check(&e, 11, "vms[0].memory", &["negative"]);
}

#[test]
fn malformed_quantity() {
    let e = err(&GOOD.replace("cpu: 16", "cpu: 16cores"));
    check(&e, 5, "nodes[0].cpu", &["unknown suffix"]);
}

#[test]
fn unknown_node_in_an_event() {
    let e = err(&format!("{GOOD}events:\n  - at: 30m\n    action: enterMaintenance\n    node: node-7\n"));
    check(&e, 15, "events[0].node", &["node-7", "node-1, node-2"]);
}

#[test]
fn duplicate_vm_name() {
    let e = err(&format!("{GOOD}  - name: web-2\n    vcpus: 1\n    memory: 1Gi\n"));
    check(&e, 12, "vms[1].name", &["web-2", "twice"]);
}

#[test]
fn threshold_out_of_range() {
    let e = err(&format!("{GOOD}pool:\n  migrationThreshold: 0\n"));
    check(&e, 13, "pool.migrationThreshold", &["1", "5"]);
}

#[test]
fn unknown_automation_level() {
    let e = err(&format!("{GOOD}pool:\n  automation: Automatic\n"));
    check(&e, 13, "pool.automation", &["FullyAutomated", "PartiallyAutomated", "Manual"]);
}

#[test]
fn missing_trace_file() {
    let text =
        GOOD.replace("    memory: 4Gi\n", "    memory: 4Gi\n    workload:\n      cpu: {planetlab: {day: 19990101}}\n");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios/bad.yaml");
    let e = Scenario::parse(&dir, &text).expect_err("no such day");
    assert_eq!(e.field, "vms[0].workload.cpu.planetlab.day", "{e}");
    assert_eq!(e.line, Some(13), "{e}");
    assert!(e.message.contains("20110303"), "lists the days there are: {e}");
}

#[test]
fn missing_trace_folder() {
    let text = format!(
        "traces: no/such/folder\n{}",
        GOOD.replace("    memory: 4Gi\n", "    memory: 4Gi\n    workload:\n      cpu: {bitbrains: {first: 3}}\n")
    );
    let e = err(&text);
    assert!(e.message.contains("no/such/folder") && e.message.contains("traces:"), "{e}");
    assert_eq!(e.line, Some(14), "{e}");
}

#[test]
fn limit_below_request() {
    let e = err(&GOOD.replace("    memory: 4Gi\n", "    memory: 4Gi\n    requests: {cpu: 2}\n    limits: {cpu: 1}\n"));
    check(&e, 13, "vms[0].limits.cpu", &["limit >= request"]);
}

#[test]
fn unknown_cpu_generation() {
    let e = err(&GOOD.replace("    memory: 64Gi\n", "    memory: 64Gi\n    generation: Pentium\n"));
    check(&e, 7, "nodes[0].generation", &["Pentium", "Haswell", "Icelake"]);
}

#[test]
fn bad_duration() {
    let e = err(&GOOD.replace("duration: 2h", "duration: 2 hours"));
    check(&e, 1, "duration", &["not a duration", "1h30m"]);
}

#[test]
fn interval_not_a_multiple_of_step() {
    let e = err(&format!("{GOOD}step: 2m\npool:\n  interval: 5m\n"));
    check(&e, 14, "pool.interval", &["multiple of step"]);
}

#[test]
fn an_event_with_a_field_its_action_does_not_take() {
    let e = err(&format!("{GOOD}events:\n  - at: 30m\n    action: powerOn\n    node: node-1\n"));
    check(&e, 15, "events[0].node", &["takes only vm, group"]);
}

#[test]
fn a_missing_file_is_named() {
    let e = Scenario::load(Path::new("no/such/scenario.yaml")).unwrap_err();
    assert!(e.to_string().starts_with("no/such/scenario.yaml: cannot read"), "{e}");
}
