//! `kubedrs simulate`: runs a scenario and prints a timeline and a summary (or `--json`, or an HTML report).

use super::insight;
use super::metrics::{RunResult, span};
use super::report;
use super::run::simulate;
use super::scenario::{Scenario, ScenarioError};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `kubedrs simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Scenario file (YAML), e.g. examples/scenarios/load-spike.yaml. Without one, the embedded default
    /// runs: examples/scenarios/maintenance.yaml (a node enters maintenance, empties, returns).
    pub scenario: Option<PathBuf>,
    /// Print the results as JSON (summary, passes, per-step series, timeline) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report with plots to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print only the summary, not the timeline.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The scenario `kubedrs simulate` runs when given none.
const DEFAULT_SCENARIO: &str = include_str!("../../../examples/scenarios/maintenance.yaml");

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    // A report that cannot be written is found out before the run, not after it.
    if let Some(path) = &args.report
        && let Err(why) = check_report_path(path)
    {
        eprintln!("error: --report {}: {why}", path.display());
        std::process::exit(2);
    }
    let scenario = match &args.scenario {
        Some(path) => Scenario::load(path),
        None => {
            Scenario::parse(std::path::Path::new("(embedded) examples/scenarios/maintenance.yaml"), DEFAULT_SCENARIO)
        }
    };
    let loaded = scenario.and_then(|mut scenario| {
        if let Some(seed) = args.seed {
            scenario.seed = seed;
        }
        let refused = insight::refusals(&scenario);
        if !refused.is_empty() {
            for r in refused {
                eprintln!("error: {}: {r}", scenario.path.display());
            }
            std::process::exit(2);
        }
        for w in insight::warnings(&scenario) {
            eprintln!("warning: {w}");
        }
        let result = run_with_progress(&scenario)?;
        Ok((scenario, result))
    });
    let (scenario, result) = match loaded {
        Ok(done) => done,
        // A scenario error is the user's to fix: print it alone (file:line:column: field: message), no backtrace.
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let insights = insight::of(&scenario, &result);
    if let Some(path) = &args.report {
        std::fs::write(path, report::html(&result, &insights))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = if args.json {
        let json = serde_json::to_string_pretty(&JsonOutput { result: &result, insights: &insights })?;
        json + "\n"
    } else {
        let mut t = text(&scenario, &result, &insights, args.quiet);
        if let Some(path) = &args.report {
            t += &format!("\nreport written to {}\n", path.display());
        }
        t
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    emit(&out)
}

/// `--json`: the run's results, and `insights` beside them.
#[derive(serde::Serialize)]
struct JsonOutput<'a> {
    #[serde(flatten)]
    result: &'a RunResult,
    insights: &'a insight::Insights,
}

/// Writes to stdout; a reader that went away (`kubedrs simulate --json | head`) ends the output quietly.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// The folder of `--report` exists and the file can be written there.
pub fn check_report_path(path: &std::path::Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("folder {} does not exist: create it first", dir.display()));
    }
    if path.is_dir() {
        return Err("is a folder: give a file name, e.g. report.html".to_string());
    }
    Ok(())
}

/// Runs with a progress bar on stderr, shown only if stderr is a terminal and the run lasts over a second.
fn run_with_progress(s: &Scenario) -> Result<RunResult, ScenarioError> {
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(Some(s.duration / s.step), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{spinner} simulating {msg} [{bar:40}] {percent}% ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(s.name.clone());
    let start = Instant::now();
    let mut shown = false;
    let result = simulate(s, &mut |done, _| {
        if tty && !shown && start.elapsed() > Duration::from_secs(1) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
        bar.set_position(done);
    });
    bar.finish_and_clear();
    result
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The text output: header, timeline, summary table.
pub fn text(s: &Scenario, r: &RunResult, insights: &insight::Insights, quiet: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let on = s.vms.iter().filter(|v| v.powered_on).count();
    let _ = writeln!(out, "kubedrs simulate: {} ({})", r.scenario, r.file);
    if !r.description.is_empty() {
        for line in r.description.trim().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(
        out,
        "  {} nodes, {} VMs ({on} on at start), {} in {} steps, pass every {}, {}, threshold {}, seed {}",
        s.nodes.len(),
        s.vms.len(),
        span(r.duration_secs),
        span(r.step_secs),
        span(r.interval_secs),
        r.automation,
        r.migration_threshold,
        r.seed
    );
    if !quiet {
        let _ = writeln!(out);
        for e in &r.timeline {
            let _ = writeln!(out, "{}  {:<11} {}", super::metrics::clock(e.t as f64), e.kind, e.text);
        }
    }
    let m = &r.summary;
    let g = &m.migrations;
    let reasons: Vec<String> = g.by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let rows: Vec<(&str, String)> = vec![
        ("demand met", format!("CPU {}   memory {}", pct(m.demand_met.cpu), pct(m.demand_met.memory))),
        (
            "  per VM group",
            m.demand_met_by_group
                .iter()
                .map(|(g, d)| format!("{g} {}/{}", pct(d.cpu), pct(d.memory)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "imbalance (engine)",
            format!(
                "mean {:.3}   p95 {:.3}   max {:.3}   target mean {:.3}",
                m.imbalance.mean, m.imbalance.p95, m.imbalance.max, m.target_imbalance.mean
            ),
        ),
        (
            "CPU load spread (sd)",
            format!(
                "mean {:.3}   p95 {:.3}   max {:.3}",
                m.cpu_load_stddev.mean, m.cpu_load_stddev.p95, m.cpu_load_stddev.max
            ),
        ),
        (
            "hottest node (CPU)",
            format!(
                "mean {}   p95 {}   max {}",
                pct(m.hottest_node.mean),
                pct(m.hottest_node.p95),
                pct(m.hottest_node.max)
            ),
        ),
        (
            "migrations",
            format!(
                "{} started, {} done, {} failed, {} timed out, {} aborted{}",
                g.started,
                g.completed,
                g.failed,
                g.timed_out,
                g.aborted,
                if reasons.is_empty() { String::new() } else { format!("   ({})", reasons.join(", ")) }
            ),
        ),
        (
            "moved",
            format!(
                "{:.1} GiB (wasted {:.1} GiB), mean {:.0}s, max {:.0}s, at most {} in flight",
                g.gib_moved, g.gib_wasted, g.mean_secs, g.max_secs, g.max_in_flight
            ),
        ),
        ("ping-pong moves", format!("{}   (back within {})", m.ping_pong, span(s.ping_pong_window))),
        ("oscillation", oscillation_text(&insights.oscillation)),
        ("placements", format!("{}   (still pending at end: {})", m.placements, m.pending_at_end)),
        (
            "not executed",
            format!("{} recommended only, {} deferred, {} rejected", m.recommendations, m.deferred, m.rejected),
        ),
        ("blocked VMs", format!("max {} in a pass, {} VM-passes", m.blocked_max, m.blocked_vm_passes)),
        (
            "transit overcommit",
            format!(
                "{:.0} node-min of migration targets above 100% requests or memory",
                m.transit_overcommit_node_minutes
            ),
        ),
        (
            "rule violations",
            format!(
                "{:.0} VM-min Required, {:.0} VM-min Preferred",
                m.required_rule_violation_minutes, m.preferred_rule_violation_minutes
            ),
        ),
        (
            "decision time",
            format!(
                "max {:.2} ms, mean {:.2} ms over {} passes ({} balancing)",
                r.timing.max_decision_ms,
                r.timing.mean_decision_ms,
                r.passes.len(),
                m.balancing_passes
            ),
        ),
    ];
    let mut rows = rows;
    rows.insert(3, ("CPU baseline", baseline_text(&insights.cpu_baseline)));
    if let Some(st) = &insights.stopped_above_target {
        rows.insert(
            3,
            (
                "balancing stopped",
                format!(
                    "at {:.3}, above the target {:.3}, at {}: {}",
                    st.imbalance,
                    st.target,
                    super::metrics::clock(st.t as f64),
                    st.why
                ),
            ),
        );
    }
    let _ = writeln!(out, "\nSummary");
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<22}{v}");
    }
    if !insights.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings");
        for w in &insights.warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    out
}

/// `Haswell-noTSX (Auto)`, or why there is none.
pub fn baseline_text(b: &insight::CpuBaseline) -> String {
    match (&b.resolved, b.setting.as_str()) {
        (Some(m), "Auto") => format!("{m} (resolved by Auto: the newest model every node supports)"),
        (Some(m), _) => format!("{m} (set)"),
        (None, "Off") => "none (Off: reported only)".to_string(),
        (None, _) => format!("none ({}: no model every node supports)", b.setting),
    }
}

pub fn oscillation_text(o: &insight::Oscillation) -> String {
    format!(
        "{} returns to a node left within 24 h ({} VMs); most moves of one VM in a day: {}{}",
        o.returns_within_day,
        o.vms,
        o.most_moves_in_a_day,
        o.busiest_vm.as_ref().map(|v| format!(" ({v})")).unwrap_or_default()
    )
}
