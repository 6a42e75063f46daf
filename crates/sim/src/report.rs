//! The HTML report of a run (`--report out.html`): one self-contained page, plots drawn here as inline SVG
//! (no scripts, no fonts or files from elsewhere), so it can be mailed, attached to an issue or opened offline.
//! Plots: per-node CPU and memory load, imbalance against target, migrations per pass by reason, demand met.

use super::insight::Insights;
use super::metrics::{RunResult, clock, span};
use std::fmt::Write;

const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#79706e"];
const REASON_COLORS: [(&str, &str); 5] = [
    ("maintenance", "#b07aa1"),
    ("rule", "#e15759"),
    ("reservation", "#f28e2b"),
    ("balance", "#4e79a7"),
    ("placement", "#59a14f"),
];
/// Most points drawn per line: beyond this, each pixel column keeps its highest value (peaks stay visible).
const MAX_POINTS: usize = 1200;
const W: f64 = 1040.0;
const H: f64 = 250.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;
/// Node load charts draw at most this many nodes in colour (the hottest); the rest are grey "others".
pub const LEGEND_NODES: usize = 8;
const OTHERS: &str = "#c8ccd1";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Series {
    name: String,
    color: String,
    points: Vec<(f64, Option<f64>)>,
    dashed: bool,
    width: f64,
}

struct Bar {
    x: f64,
    /// (value, color), stacked from the bottom.
    stack: Vec<(f64, &'static str)>,
}

struct Chart {
    x_max: f64,
    /// Bottom of the y axis (0 unless the chart is zoomed onto a narrow band, see [`Chart::fit`]).
    y_min: f64,
    y_max: f64,
    y_step: f64,
    percent: bool,
    series: Vec<Series>,
    bars: Vec<Bar>,
    bar_width: f64,
    /// Times of events: a thin vertical line each, labelled with their numbers in the event list.
    markers: Vec<(f64, String)>,
    /// Horizontal reference lines (value, label).
    refs: Vec<(f64, &'static str)>,
}

impl Chart {
    /// A chart from 0 to at least `y_max`, rounded up to a tick of 1, 2, 2.5 or 5 times a power of ten
    /// (whole numbers only when `integer`).
    fn new(x_max: f64, y_max: f64, percent: bool) -> Self {
        Chart::with_ticks(x_max, y_max, percent, false)
    }

    fn with_ticks(x_max: f64, y_max: f64, percent: bool, integer: bool) -> Self {
        let raw = (y_max.max(1e-9)) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let mut y_step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|st| *st >= raw).unwrap_or(10.0 * mag);
        if integer {
            y_step = y_step.ceil().max(1.0);
        }
        Chart {
            x_max: x_max.max(1.0),
            y_min: 0.0,
            y_max: (y_max / y_step).ceil().max(1.0) * y_step,
            y_step,
            percent,
            series: vec![],
            bars: vec![],
            bar_width: 0.0,
            markers: vec![],
            refs: vec![],
        }
    }

    /// A chart of values between `lo` and `hi`: from 0 when `lo` is below half of `hi`, else zoomed onto the
    /// band (ticks of the same steps), so that a dip of a few points from 100% shows.
    fn fit(x_max: f64, lo: f64, hi: f64, percent: bool) -> Self {
        if !(lo.is_finite() && hi.is_finite()) || lo < hi * 0.5 || hi <= 0.0 {
            return Chart::new(x_max, hi.max(1e-9), percent);
        }
        // At least a band of 2% of `hi`, so a flat line is not blown up to fill the chart.
        let band = (hi - lo).max(hi * 0.02);
        let mut c = Chart::new(x_max, band, percent);
        let step = c.y_step;
        c.y_min = ((hi - band * 1.1) / step).floor() * step;
        c.y_min = c.y_min.max(0.0);
        c.y_max = (hi / step).ceil() * step;
        c
    }

    fn x(&self, t: f64) -> f64 {
        LEFT + t / self.x_max * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        let span = (self.y_max - self.y_min).max(1e-12);
        TOP + (1.0 - ((v - self.y_min) / span).clamp(0.0, 1.05)) * (H - TOP - BOTTOM)
    }

    fn fmt_y(&self, v: f64) -> String {
        if self.percent {
            let p = v * 100.0;
            if (p - p.round()).abs() < 1e-6 { format!("{p:.0}%") } else { format!("{p:.1}%") }
        } else if self.y_step >= 1.0 {
            format!("{v:.0}")
        } else if self.y_step >= 0.1 {
            format!("{v:.1}")
        } else if self.y_step >= 0.01 {
            format!("{v:.2}")
        } else {
            format!("{v:.3}")
        }
    }

    fn svg(&self, label: &str) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
            esc(label)
        );
        // Grid and y axis.
        let ticks = ((self.y_max - self.y_min) / self.y_step).round() as usize;
        for i in 0..=ticks {
            let v = self.y_min + self.y_step * i as f64;
            let y = self.y(v);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e6e8eb"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                self.fmt_y(v)
            );
        }
        // x axis: a tick step that gives at most ~12 labels.
        let steps = [300.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0, 172800.0, 604800.0];
        let step = steps.iter().copied().find(|st| self.x_max / st <= 12.0).unwrap_or(604800.0);
        let mut t = 0.0;
        while t <= self.x_max + 1e-9 {
            let x = self.x(t);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#f0f1f3"/><text x="{x:.1}" y="{}" class="tick" text-anchor="middle">{}</text>"##,
                H - BOTTOM,
                H - BOTTOM + 16.0,
                clock(t)
            );
            t += step;
        }
        for (t, n) in &self.markers {
            let x = self.x(*t);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#9aa0a6" stroke-dasharray="2 3"/><text x="{:.1}" y="{}" class="marker">{n}</text>"##,
                H - BOTTOM,
                x + 3.0,
                TOP + 10.0
            );
        }
        for b in &self.bars {
            let mut base = 0.0;
            for (v, color) in &b.stack {
                let (y0, y1) = (self.y(base), self.y(base + v));
                let _ = write!(
                    s,
                    r#"<rect x="{:.1}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"#,
                    self.x(b.x) - self.bar_width / 2.0,
                    self.bar_width.max(1.5),
                    (y0 - y1).max(0.0)
                );
                base += v;
            }
        }
        for (v, label) in &self.refs {
            let y = self.y(*v);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#5f6368" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{label}</text>"##,
                W - RIGHT,
                W - RIGHT - 4.0,
                y - 4.0
            );
        }
        for line in &self.series {
            let dash = if line.dashed { r#" stroke-dasharray="6 4""# } else { "" };
            for seg in segments(&downsample(&line.points)) {
                let pts: Vec<String> =
                    seg.iter().map(|(t, v)| format!("{:.1},{:.1}", self.x(*t), self.y(*v))).collect();
                let _ = write!(
                    s,
                    r#"<polyline fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round"{dash} points="{}"/>"#,
                    line.color,
                    line.width,
                    pts.join(" ")
                );
            }
        }
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{}" stroke="#9aa0a6"/><line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#9aa0a6"/></svg>"##,
            H - BOTTOM,
            W - RIGHT,
            H - BOTTOM,
            H - BOTTOM
        );
        s
    }

    fn legend(&self, extra: &[(&str, &str)]) -> String {
        let mut s = String::from(r#"<div class="legend">"#);
        for l in self.series.iter().filter(|l| !l.name.is_empty()) {
            let style = if l.dashed { "border-top:2px dashed" } else { "border-top:3px solid" };
            let _ = write!(s, r#"<span><i style="{style} {}"></i>{}</span>"#, l.color, esc(&l.name));
        }
        for (name, color) in extra {
            let _ = write!(s, r#"<span><b style="background:{color}"></b>{}</span>"#, esc(name));
        }
        s.push_str("</div>");
        s
    }
}

/// The indices of the `n` nodes with the highest peak load (all of them when there are at most `n + 1`: a
/// legend entry "1 other node" saves nothing), in node order.
fn hottest(loads: &[Vec<Option<f64>>], n: usize) -> Vec<usize> {
    if loads.len() <= n + 1 {
        return (0..loads.len()).collect();
    }
    let peak = |s: &Vec<Option<f64>>| s.iter().flatten().fold(0.0f64, |a, b| a.max(*b));
    let mut idx: Vec<usize> = (0..loads.len()).collect();
    idx.sort_by(|&a, &b| peak(&loads[b]).total_cmp(&peak(&loads[a])).then(a.cmp(&b)));
    idx.truncate(n);
    idx.sort_unstable();
    idx
}

/// Splits a line at its gaps (None).
fn segments(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![];
    let mut cur = vec![];
    for (t, v) in points {
        match v {
            Some(v) => cur.push((*t, *v)),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// At most [`MAX_POINTS`] points, keeping the highest value of each bucket.
fn downsample(points: &[(f64, Option<f64>)]) -> Vec<(f64, Option<f64>)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let per = points.len().div_ceil(MAX_POINTS);
    points.chunks(per).map(|c| (c[0].0, c.iter().filter_map(|p| p.1).max_by(f64::total_cmp))).collect()
}

fn card(label: &str, value: &str, note: &str) -> String {
    format!(
        r#"<div class="card"><div class="k">{}</div><div class="v">{}</div><div class="n">{}</div></div>"#,
        esc(label),
        esc(value),
        esc(note)
    )
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The whole page.
pub fn html(r: &RunResult, insights: &Insights) -> String {
    let m = &r.summary;
    let x_max = r.duration_secs as f64;
    let times: Vec<f64> = r.steps.t.iter().map(|t| *t as f64).collect();
    let events: Vec<&super::metrics::TimelineEntry> = r.timeline.iter().filter(|e| e.kind == "event").collect();
    // Events at the same time share one marker ("1,2").
    let mut markers: Vec<(f64, String)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        match markers.last_mut() {
            Some((t, label)) if *t == e.t as f64 => *label += &format!(",{}", i + 1),
            _ => markers.push((e.t as f64, (i + 1).to_string())),
        }
    }

    // Per-node load, CPU and memory: the hottest nodes in colour, the others grey under one legend entry.
    let load_chart = |loads: &[Vec<Option<f64>>]| {
        let peak = loads.iter().flatten().flatten().fold(1.0f64, |a, b| a.max(*b));
        let mut c = Chart::new(x_max, peak.max(1.0) * 1.05, true);
        c.refs.push((1.0, "capacity"));
        c.markers = markers.clone();
        let shown = hottest(loads, LEGEND_NODES);
        let others = loads.len() - shown.len();
        if others > 0 {
            for (_, series) in loads.iter().enumerate().filter(|(i, _)| !shown.contains(i)) {
                c.series.push(Series {
                    name: String::new(),
                    color: OTHERS.into(),
                    points: times.iter().copied().zip(series.iter().copied()).collect(),
                    dashed: false,
                    width: 1.0,
                });
            }
        }
        for (k, &i) in shown.iter().enumerate() {
            c.series.push(Series {
                name: r.steps.nodes[i].clone(),
                color: PALETTE[k % PALETTE.len()].into(),
                points: times.iter().copied().zip(loads[i].iter().copied()).collect(),
                dashed: false,
                width: 1.6,
            });
        }
        (c, others)
    };
    let (cpu, cpu_others) = load_chart(&r.steps.cpu_load);
    let (mem, mem_others) = load_chart(&r.steps.memory_load);
    let others_label = |n: usize| format!("{n} other nodes");

    // Imbalance against target, at balancing passes.
    let balance: Vec<&super::metrics::PassRecord> = r.passes.iter().filter(|p| p.kind == "balance").collect();
    let imb_max = balance.iter().map(|p| p.imbalance_before.max(p.target)).fold(0.01f64, f64::max) * 1.15;
    let mut imb = Chart::new(x_max, imb_max, false);
    imb.markers = markers.clone();
    imb.series.push(Series {
        name: "imbalance (before each pass)".into(),
        color: PALETTE[0].into(),
        points: balance.iter().map(|p| (p.t as f64, Some(p.imbalance_before))).collect(),
        dashed: false,
        width: 1.8,
    });
    imb.series.push(Series {
        name: "after the plan".into(),
        color: PALETTE[4].into(),
        points: balance.iter().map(|p| (p.t as f64, Some(p.imbalance_after))).collect(),
        dashed: false,
        width: 1.0,
    });
    imb.series.push(Series {
        name: "target".into(),
        color: "#5f6368".into(),
        points: balance.iter().map(|p| (p.t as f64, Some(p.target))).collect(),
        dashed: true,
        width: 1.4,
    });

    // Migrations started per pass, stacked by reason.
    let mut per_pass: std::collections::BTreeMap<u64, Vec<(f64, &'static str)>> = Default::default();
    for mig in &r.migrations {
        let color = REASON_COLORS.iter().find(|(k, _)| *k == mig.reason).map_or("#79706e", |(_, c)| *c);
        per_pass.entry(mig.started).or_default().push((1.0, color));
    }
    let most =
        per_pass.values().map(|v| v.len()).chain(r.steps.in_flight.iter().map(|n| *n as usize)).max().unwrap_or(0);
    let mut migs = Chart::with_ticks(x_max, most.max(4) as f64, false, true);
    migs.markers = markers.clone();
    migs.bar_width = ((W - LEFT - RIGHT) * r.interval_secs as f64 / x_max * 0.7).clamp(1.5, 14.0);
    for (t, mut stack) in per_pass {
        stack.sort_by_key(|(_, c)| REASON_COLORS.iter().position(|(_, rc)| rc == c));
        migs.bars.push(Bar { x: t as f64, stack });
    }
    migs.series.push(Series {
        name: "in flight".into(),
        color: "#202124".into(),
        points: times.iter().copied().zip(r.steps.in_flight.iter().map(|n| Some(*n as f64))).collect(),
        dashed: false,
        width: 1.0,
    });
    let failed: Vec<&super::metrics::MigrationRecord> =
        r.migrations.iter().filter(|m| m.outcome != "completed").collect();

    // Demand met.
    let lowest = r
        .steps
        .cpu_met
        .iter()
        .chain(&r.steps.memory_met)
        .chain(r.steps.group_cpu_met.values().flatten())
        .fold(1.0f64, |a, b| a.min(*b));
    let mut met = Chart::fit(x_max, lowest, 1.0, true);
    met.markers = markers.clone();
    met.refs.push((1.0, "all demand met"));
    met.series.push(Series {
        name: "CPU (all VMs)".into(),
        color: PALETTE[0].into(),
        points: times.iter().copied().zip(r.steps.cpu_met.iter().map(|v| Some(*v))).collect(),
        dashed: false,
        width: 2.2,
    });
    met.series.push(Series {
        name: "memory (all VMs)".into(),
        color: PALETTE[1].into(),
        points: times.iter().copied().zip(r.steps.memory_met.iter().map(|v| Some(*v))).collect(),
        dashed: false,
        width: 2.2,
    });
    if r.steps.group_cpu_met.len() > 1 {
        for (i, (g, series)) in r.steps.group_cpu_met.iter().enumerate() {
            met.series.push(Series {
                name: format!("CPU of {g}"),
                color: PALETTE[(i + 2) % PALETTE.len()].into(),
                points: times.iter().copied().zip(series.iter().map(|v| Some(*v))).collect(),
                dashed: true,
                width: 1.4,
            });
        }
    }

    let g = &m.migrations;
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kubedrs simulate: {name}</title><style>{CSS}</style></head><body><main>
<header><div class="brand">kubedrs simulate</div><h1>{name}</h1><p class="desc">{desc}</p>
<p class="setup">{setup}</p></header>"#,
        name = esc(&r.scenario),
        desc = esc(r.description.trim()).replace('\n', "<br>"),
        setup = esc(&format!(
            "{} · {} in {} steps · pass every {} · {} · threshold {} · seed {}",
            r.file,
            span(r.duration_secs),
            span(r.step_secs),
            span(r.interval_secs),
            r.automation,
            r.migration_threshold,
            r.seed
        )),
    );
    page.push_str(r#"<section class="cards">"#);
    page += &card("CPU demand met", &pct(m.demand_met.cpu), &format!("memory {}", pct(m.demand_met.memory)));
    page += &card(
        "imbalance",
        &format!("{:.3}", m.imbalance.mean),
        &format!("p95 {:.3} · target {:.3}", m.imbalance.p95, m.target_imbalance.mean),
    );
    page += &card("hottest node", &pct(m.hottest_node.max), &format!("mean {}", pct(m.hottest_node.mean)));
    page += &card(
        "migrations",
        &g.started.to_string(),
        &format!("{} done · {} failed · {} timed out", g.completed, g.failed, g.timed_out),
    );
    page += &card(
        "moved",
        &format!("{:.1} GiB", g.gib_moved),
        &format!("mean {:.0}s · max {:.0}s", g.mean_secs, g.max_secs),
    );
    page += &card("ping-pong", &m.ping_pong.to_string(), &format!("{} placements", m.placements));
    let o = &insights.oscillation;
    page += &card(
        "oscillation",
        &o.returns_within_day.to_string(),
        &format!("back within 24 h · most moves of a VM in a day {}", o.most_moves_in_a_day),
    );
    let b = &insights.cpu_baseline;
    page += &card("CPU baseline", b.resolved.as_deref().unwrap_or("none"), &b.setting);
    page += &card(
        "decision time",
        &format!("{:.2} ms", r.timing.max_decision_ms),
        &format!("max · mean {:.2} ms", r.timing.mean_decision_ms),
    );
    page += &card(
        "rules broken",
        &format!("{:.0}", m.required_rule_violation_minutes),
        &format!("VM-min Required · {:.0} Preferred", m.preferred_rule_violation_minutes),
    );
    page.push_str("</section>");
    if !insights.warnings.is_empty() {
        page.push_str(r#"<section class="chart warn"><h2>Warnings</h2><ul>"#);
        for w in &insights.warnings {
            let _ = write!(page, "<li>{}</li>", esc(w));
        }
        page.push_str("</ul></section>");
    }

    let section = |page: &mut String, title: &str, note: &str, chart: &Chart, extra: &[(&str, &str)]| {
        let _ = write!(
            page,
            r#"<section class="chart"><h2>{}</h2><p class="note">{}</p>{}{}</section>"#,
            esc(title),
            esc(note),
            chart.svg(title),
            chart.legend(extra)
        );
    };
    let cpu_label = others_label(cpu_others);
    let mem_label = others_label(mem_others);
    let cpu_refs: Vec<(&str, &str)> = if cpu_others > 0 { vec![(cpu_label.as_str(), OTHERS)] } else { vec![] };
    let mem_refs: Vec<(&str, &str)> = if mem_others > 0 { vec![(mem_label.as_str(), OTHERS)] } else { vec![] };
    section(
        &mut page,
        "CPU load per node",
        &format!(
            "CPU demand / capacity of each node, every step. Above the dashed line the node is short of CPU.{}",
            if cpu_others > 0 {
                format!(" In colour the {} hottest nodes (highest peak), in grey the others.", LEGEND_NODES)
            } else {
                String::new()
            }
        ),
        &cpu,
        &cpu_refs,
    );
    section(
        &mut page,
        "Memory load per node",
        &format!(
            "Memory demand / capacity, including memory held on the target of each migration in flight.{}",
            if mem_others > 0 {
                format!(" In colour the {} hottest nodes, in grey the others.", LEGEND_NODES)
            } else {
                String::new()
            }
        ),
        &mem,
        &mem_refs,
    );
    section(
        &mut page,
        "Imbalance and target",
        &match &insights.stopped_above_target {
            Some(st) => format!(
                "The engine's imbalance (standard deviation of node loads) as each balancing pass found it and after its plan, against the threshold's target. Balancing stopped at {:.3}, above the target {:.3}: {}",
                st.imbalance, st.target, st.why
            ),
            None => "The engine's imbalance (standard deviation of node loads) as each balancing pass found it and after its plan, against the threshold's target.".to_string(),
        },
        &imb,
        &[],
    );
    let mut reasons: Vec<(&str, &str)> =
        REASON_COLORS.iter().filter(|(k, _)| g.by_reason.contains_key(*k)).map(|(k, c)| (*k, *c)).collect();
    if reasons.is_empty() {
        reasons.push(("no migrations", "#e6e8eb"));
    }
    section(
        &mut page,
        "Migrations",
        "Migrations started at each pass, by reason (bars), and migrations in flight (line).",
        &migs,
        &reasons,
    );
    section(
        &mut page,
        "Demand met",
        &format!(
            "Share of demand delivered, after each node divides its capacity by reservations and shares.{}",
            if met.y_min > 0.0 {
                format!(" The axis starts at {}, so that small dips show.", pct(met.y_min))
            } else {
                String::new()
            }
        ),
        &met,
        &[],
    );

    if !events.is_empty() {
        page.push_str(r#"<section class="chart"><h2>Events</h2><ol class="events">"#);
        for e in &events {
            let _ = write!(page, "<li><code>{}</code> {}</li>", clock(e.t as f64), esc(&e.text));
        }
        page.push_str("</ol></section>");
    }
    if !failed.is_empty() {
        page.push_str(r#"<section class="chart"><h2>Migrations that did not complete</h2><table><tr><th>VM</th><th>from</th><th>to</th><th>reason</th><th>started</th><th>outcome</th></tr>"#);
        for f in &failed {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.vm),
                esc(&f.from),
                esc(&f.to),
                esc(&f.reason),
                clock(f.started as f64),
                esc(&f.outcome)
            );
        }
        page.push_str("</table></section>");
    }
    let _ = write!(
        page,
        r#"<section class="chart"><details><summary>Timeline ({} lines)</summary><table class="timeline">"#,
        r.timeline.len()
    );
    for e in &r.timeline {
        let _ = write!(
            page,
            r#"<tr class="{}"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>"#,
            e.kind,
            clock(e.t as f64),
            e.kind,
            esc(&e.text)
        );
    }
    page.push_str("</table></details></section>");
    page.push_str(r#"<footer>Generated by <code>kubedrs simulate</code>. Self-contained: no scripts, no external files.</footer></main></body></html>"#);
    page.push('\n');
    page
}

const CSS: &str = r#"
:root{--fg:#202124;--muted:#5f6368;--bg:#f6f7f9;--card:#fff;--line:#e6e8eb;--accent:#4e79a7}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 20px 40px}
header .brand{color:var(--accent);font-weight:600;letter-spacing:.04em;text-transform:uppercase;font-size:12px}
h1{margin:4px 0 6px;font-size:28px}h2{margin:0 0 2px;font-size:17px}
.desc{margin:0 0 6px;max-width:900px}.setup{color:var(--muted);margin:0 0 18px;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(118px,1fr));gap:10px;margin-bottom:18px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card .k{color:var(--muted);font-size:12px}.card .v{font-size:22px;font-weight:600;margin:2px 0}.card .n{color:var(--muted);font-size:12px}
.chart{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px 10px;margin-bottom:14px}
.note{color:var(--muted);margin:0 0 6px;font-size:13px}
svg .tick{font-size:11px;fill:#5f6368}svg .marker{font-size:10px;fill:#5f6368}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;color:var(--muted);margin-top:4px}
.legend i{display:inline-block;width:18px;margin-right:6px;vertical-align:middle}
.warn{border-color:#e8b4b0}.warn li{color:#b3261e}
.legend b{display:inline-block;width:11px;height:11px;margin-right:6px;vertical-align:-1px;border-radius:2px}
.events{margin:6px 0 4px;padding-left:22px}.events li{margin:2px 0}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:8px}td,th{text-align:left;padding:3px 8px;border-bottom:1px solid var(--line);vertical-align:top}
.timeline td:nth-child(2){color:var(--muted);white-space:nowrap}.timeline tr.warning td{color:#b3261e}.timeline tr.event td{font-weight:600}
summary{cursor:pointer;font-weight:600;font-size:15px}code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:20px}
"#;
