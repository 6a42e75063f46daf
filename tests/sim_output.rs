//! What `kubedrs simulate` and `kubedrs compare` tell the user beyond the figures: why balancing stopped, the
//! resolved CPU baseline, oscillation, warnings on scenarios that cannot be meant, a quiet end on a closed
//! pipe, a `--report` folder checked before the run, a capped report legend, a y axis that shows small dips,
//! and where `compare` writes.
#![allow(clippy::unwrap_used)]

use kubedrs_sim::{Scenario, insight, report, simulate};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubedrs"))
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios").join(format!("{name}.yaml"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kubedrs-sim-output-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn mixed_cpu_says_why_balancing_stopped_and_which_baseline_it_resolved() {
    let out = bin().args(["simulate", "-q"]).arg(example("mixed-cpu")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let baseline = text.lines().find(|l| l.trim_start().starts_with("CPU baseline")).expect("a CPU baseline line");
    assert!(baseline.contains("Haswell") && baseline.contains("Auto"), "{baseline}");
    let s = Scenario::load(&example("mixed-cpu")).unwrap();
    let r = simulate(&s, &mut |_, _| {}).unwrap();
    let i = insight::of(&s, &r);
    if let Some(st) = &i.stopped_above_target {
        let line = text.lines().find(|l| l.trim_start().starts_with("balancing stopped")).expect("a stop line");
        assert!(line.contains(&format!("{:.3}", st.target)) && line.contains(&st.why), "{line}");
        assert!(!st.why.is_empty());
    } else {
        assert!(!text.contains("balancing stopped"), "{text}");
    }
    let page = report::html(&r, &i);
    assert!(page.contains(i.cpu_baseline.resolved.as_deref().unwrap()), "the report shows the baseline");
    if let Some(st) = &i.stopped_above_target {
        assert!(page.contains("Balancing stopped at"), "the report says why: {}", st.why);
    }
}

#[test]
fn a_run_that_stops_above_target_is_explained() {
    // Two nodes, one VM too big to move anywhere useful: the pool stays unbalanced.
    let text = "\
duration: 30m
step: 5m
pool: {migrationThreshold: 5}
nodes:
  - {prefix: n, count: 2, cpu: 8, memory: 32Gi}
vms:
  - {name: big, vcpus: 6, memory: 8Gi, node: n-1, workload: {cpu: 90%, memory: 50%}}
";
    let s = Scenario::parse(Path::new("stuck.yaml"), text).unwrap();
    let r = simulate(&s, &mut |_, _| {}).unwrap();
    let i = insight::of(&s, &r);
    let st = i.stopped_above_target.clone().expect("balancing stops above target");
    assert!(st.imbalance > st.target && !st.why.is_empty(), "{st:?}");
    let t = kubedrs_sim::cli::text(&s, &r, &i, true);
    assert!(t.contains("balancing stopped") && t.contains(&st.why), "{t}");
}

#[test]
fn vms_that_fit_nowhere_and_absurd_quantities_are_warned_about() {
    let dir = tmp("warn");
    let file = dir.join("odd.yaml");
    std::fs::write(
        &file,
        "\
duration: 10m
step: 5m
nodes:
  - {prefix: n, count: 2, cpu: 16, memory: 64Gi}
vms:
  - {prefix: huge, count: 2, vcpus: 4, memory: 100Pi}
  - {prefix: wide, count: 1, vcpus: 64, memory: 4Gi, requests: {cpu: '40'}}
  - {prefix: ok, count: 3, vcpus: 2, memory: 4Gi}
",
    )
    .unwrap();
    let out = bin().args(["simulate", "-q"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert!(warnings.iter().any(|w| w.contains("vms[0]") && w.contains("more than any machine has")), "{stderr}");
    assert!(warnings.iter().any(|w| w.contains("vms[0]") && w.contains("fits no node")), "{stderr}");
    assert!(warnings.iter().any(|w| w.contains("vms[1]") && w.contains("fits no node")), "{stderr}");
    assert!(!warnings.iter().any(|w| w.contains("vms[2]")), "the VMs that fit are not named: {stderr}");
    assert!(stdout.contains("Warnings"), "the summary repeats them: {stdout}");

    // Past what can be counted (read as the largest number there is), the run is refused.
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("100Pi", "999999Ei")).unwrap();
    let out = bin().args(["simulate", "-q"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("vms[0]") && stderr.contains("too large to simulate"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn json_into_a_closed_pipe_ends_quietly() {
    let mut child = bin()
        .args(["simulate", "--json"])
        .arg(example("planetlab-day"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "{");
    // The reader goes away (as `head -1` does); the rest of the output meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn json_carries_the_insights() {
    let out = bin().args(["simulate", "--json", "-q"]).arg(example("mixed-cpu")).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["summary"]["pingPong"].is_number(), "the results are unchanged");
    assert!(v["insights"]["oscillation"]["returnsWithinDay"].is_number(), "{}", v["insights"]);
    assert!(v["insights"]["cpuBaseline"]["resolved"].as_str().is_some_and(|m| m.contains("Haswell")));
}

#[test]
fn a_report_into_a_missing_folder_fails_before_the_run() {
    let dir = tmp("report");
    let target = dir.join("no/such/folder/out.html");
    let started = std::time::Instant::now();
    let out = bin().args(["simulate", "--report"]).arg(&target).arg(example("planetlab-day")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&out.stdout));
    assert!(started.elapsed().as_secs() < 5);
    let out = bin().args(["simulate", "-q", "--report"]).arg(dir.join("ok.html")).output().unwrap();
    assert!(out.status.success() && dir.join("ok.html").is_file());
}

#[test]
fn a_forty_node_report_names_the_hottest_nodes_and_groups_the_others() {
    let text = "\
duration: 1h
step: 5m
nodes:
  - {prefix: n, count: 40, cpu: 16, memory: 64Gi}
vms:
  - {prefix: vm, count: 80, vcpus: 2, memory: 4Gi, workload: {cpu: 50%, memory: 50%}}
";
    let s = Scenario::parse(Path::new("forty.yaml"), text).unwrap();
    let r = simulate(&s, &mut |_, _| {}).unwrap();
    let page = report::html(&r, &insight::of(&s, &r));
    let cpu = &page[page.find("<h2>CPU load per node</h2>").unwrap()..];
    let cpu = &cpu[..cpu.find("</section>").unwrap()];
    let legend = &cpu[cpu.find(r#"<div class="legend">"#).unwrap()..];
    let entries = legend.matches("<span>").count();
    assert_eq!(entries, report::LEGEND_NODES + 1, "{legend}");
    assert!(legend.contains("32 other nodes"), "{legend}");
}

#[test]
fn a_dip_of_a_few_points_in_demand_met_is_visible() {
    // Two nodes, VMs wanting more CPU than one node has for an hour: demand met dips a few points.
    let text = "\
duration: 4h
step: 5m
pool: {automation: Manual}
nodes:
  - {prefix: n, count: 2, cpu: 16, memory: 64Gi}
vms:
  - {prefix: a, count: 9, vcpus: 2, node: n-1, memory: 4Gi, workload: {cpu: {spikes: {base: 50%, level: 100%, at: 1h, duration: 1h}}, memory: 50%}}
  - {prefix: b, count: 8, vcpus: 2, node: n-2, memory: 4Gi, workload: {cpu: 50%, memory: 50%}}
";
    let s = Scenario::parse(Path::new("dip.yaml"), text).unwrap();
    let r = simulate(&s, &mut |_, _| {}).unwrap();
    let low = r.steps.cpu_met.iter().copied().fold(1.0f64, f64::min);
    assert!(low < 0.99 && low > 0.85, "a dip of a few points: {low}");
    let page = report::html(&r, &insight::of(&s, &r));
    let met = &page[page.find("<h2>Demand met</h2>").unwrap()..];
    assert!(met.contains("The axis starts at"), "the demand chart is zoomed onto the dip");
    // The lowest tick is above 0%: the dip takes a visible part of the chart's height.
    let first_tick = met.split(r#"class="tick" text-anchor="end">"#).nth(1).unwrap();
    let first_tick = &first_tick[..first_tick.find('<').unwrap()];
    assert_ne!(first_tick, "0%", "{first_tick}");
}

#[test]
fn compare_writes_to_its_own_folder_unless_told() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: kubedrs_sim::compare::CompareArgs,
    }
    let cli = Cli::parse_from(["compare"]);
    assert_eq!(cli.args.out, PathBuf::from("out/compare"));
    assert!(!cli.args.out.starts_with("docs"), "never the published figures by default");
    let cli = Cli::parse_from(["compare", "--out", "docs/benchmarks"]);
    assert_eq!(cli.args.out, PathBuf::from("docs/benchmarks"));
}

#[test]
fn a_vm_going_back_and_forth_counts_as_oscillation() {
    let s = Scenario::load(&example("load-spike")).unwrap();
    let mut r = simulate(&s, &mut |_, _| {}).unwrap();
    // The recorded moves of one VM, rewritten as node-3 -> node-5 -> node-3 -> node-5 within 10 hours.
    let template = r.migrations.first().cloned().expect("load-spike migrates");
    r.migrations = [("node-3", "node-5", 0.0), ("node-5", "node-3", 4.0), ("node-3", "node-5", 10.0)]
        .iter()
        .map(|(from, to, h)| {
            let mut m = template.clone();
            m.vm = "web-1".into();
            m.from = (*from).into();
            m.to = (*to).into();
            m.outcome = "completed".into();
            m.ended = h * 3600.0 + 120.0;
            m.started = (h * 3600.0) as u64;
            m
        })
        .collect();
    let o = insight::of(&s, &r).oscillation;
    assert_eq!((o.returns_within_day, o.most_moves_in_a_day), (2, 3));
    let t = kubedrs_sim::cli::text(&s, &r, &insight::of(&s, &r), true);
    let line = t.lines().find(|l| l.trim_start().starts_with("oscillation")).unwrap();
    assert!(line.contains("2 returns") && line.contains("in a day: 3 (web-1)"), "{line}");
}
