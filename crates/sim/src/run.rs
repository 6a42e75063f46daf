//! The run: simulated time in steps, and at each step, in this order:
//! events due -> migrations that end -> HA restarts due -> demand sampled -> maintenance states -> a pass of the
//! engine (every `interval`; between them when new VMs wait for a node or a migration ended while mandatory
//! moves waited for a slot, and then only placements and mandatory moves are acted on) -> the step's metrics.
//!
//! This module is the simulated actuator. It owns no limit: it calls the operator's gate
//! ([`kubedrs_engine::Gate`]: automation level, a VM's Manual, the balancing clock, the plan's order and
//! concurrency slots, the VM still on its source), then plays the node: a new VM's pod or a migration's target
//! pod is admitted only when its requests fit what is left there (as the kubelet does; [`Room`], the rule the
//! operator checks too). An entry that no longer matches the pool is
//! counted as rejected, not carried out.

use super::cluster::{Cluster, Ended, MaintenanceState, Outcome, VmStatus};
use super::metrics::{
    MigrationRecord, MigrationTotals, PassRecord, RunResult, Stats, StepRecorder, Summary, TimelineEntry, Timing,
    clock, r4, span,
};
use super::policies::{EnginePolicy, Policy, PolicyError};
use super::scenario::{EventKind, Scenario, ScenarioError};
use kubedrs_engine::{self, Gate, Plan, Room, Verdict};
use kubedrs_spec::quantity::human_bytes;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Instant;

const GIB: f64 = (1u64 << 30) as f64;

/// Runs a scenario to its end with the kubedrs engine. `progress(done, total)` is called after every step.
pub fn simulate(s: &Scenario, progress: &mut dyn FnMut(u64, u64)) -> Result<RunResult, ScenarioError> {
    simulate_with(s, &mut EnginePolicy, progress)
}

/// Runs a scenario to its end, asking `policy` for the plan of every pass. Whatever the policy, its plan is
/// carried out the same way (automation level, concurrency limits, migration model, metrics).
pub fn simulate_with(
    s: &Scenario,
    policy: &mut dyn Policy,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunResult, ScenarioError> {
    Run::new(s, policy).go(progress)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PassKind {
    Balance,
    Placement,
}

struct Run<'a> {
    s: &'a Scenario,
    policy: &'a mut dyn Policy,
    c: Cluster,
    steps: StepRecorder,
    passes: Vec<PassRecord>,
    timing: Vec<u64>,
    timeline: Vec<TimelineEntry>,
    migrations: Vec<MigrationRecord>,
    totals: MigrationTotals,
    ping_pong: u32,
    placements: u32,
    recommendations: u32,
    deferred: u32,
    rejected: u32,
    blocked_max: u32,
    blocked_vm_passes: u32,
    imbalance: Vec<f64>,
    targets: Vec<f64>,
    /// VMs became pending since the last pass: run a placement pass.
    new_pending: bool,
    /// The last pass left mandatory moves (maintenance, rules) waiting for a slot.
    mandatory_waiting: bool,
}

impl<'a> Run<'a> {
    fn new(s: &'a Scenario, policy: &'a mut dyn Policy) -> Self {
        let c = Cluster::new(s, ChaCha8Rng::seed_from_u64(s.seed));
        let new_pending = c.vms.iter().any(|v| v.status == VmStatus::Pending);
        Run {
            s,
            policy,
            c,
            steps: StepRecorder::default(),
            passes: Vec::new(),
            timing: Vec::new(),
            timeline: Vec::new(),
            migrations: Vec::new(),
            totals: MigrationTotals::default(),
            ping_pong: 0,
            placements: 0,
            recommendations: 0,
            deferred: 0,
            rejected: 0,
            blocked_max: 0,
            blocked_vm_passes: 0,
            imbalance: Vec::new(),
            targets: Vec::new(),
            new_pending,
            mandatory_waiting: false,
        }
    }

    fn note(&mut self, t: u64, kind: &'static str, text: String) {
        self.timeline.push(TimelineEntry { t, kind, text });
    }

    fn go(mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<RunResult, ScenarioError> {
        let s = self.s;
        let total = s.duration / s.step;
        let mut next_event = 0;
        for k in 0..total {
            let t = k * s.step;
            while next_event < s.events.len() && s.events[next_event].at <= t {
                self.event(next_event, t);
                next_event += 1;
            }
            let ended = self.c.finish_migrations(t);
            // A finished migration frees a slot: like the operator, plan again at once when mandatory
            // moves were waiting for one, instead of at the next interval.
            let slot_freed = !ended.is_empty() && self.mandatory_waiting;
            self.ended(ended);
            let restarted = self.c.restart_due(t);
            if !restarted.is_empty() {
                self.new_pending = true;
                self.note(
                    t,
                    "ha",
                    format!("{} restarting after node failure: {}", count(restarted.len(), "VM"), names(&restarted)),
                );
            }
            self.c.sample_demand(t, s.seed);
            self.maintenance_states(t, None);
            if t.is_multiple_of(s.interval) {
                self.pass(t, PassKind::Balance)?;
            } else if self.new_pending || slot_freed {
                self.pass(t, PassKind::Placement)?;
            }
            self.steps.record(&self.c, t, s.step);
            progress(k + 1, total);
        }
        // Migrations still running at the end are reported as in flight, not as outcomes.
        Ok(self.finish())
    }

    fn event(&mut self, i: usize, t: u64) {
        let e = &self.s.events[i];
        match &e.kind {
            EventKind::EnterMaintenance(n) => {
                if let Some(i) = self.c.node(n) {
                    self.c.nodes[i].maintenance = true;
                }
                let vms = self.c.vms_on(n);
                self.note(t, "event", format!("{n} enters maintenance ({} on it)", count(vms, "VM")));
            }
            EventKind::ExitMaintenance(n) => {
                if let Some(i) = self.c.node(n) {
                    self.c.nodes[i].maintenance = false;
                    self.c.nodes[i].maintenance_state = None;
                }
                self.note(t, "event", format!("{n} leaves maintenance: Ready"));
            }
            EventKind::FailNode(n) => {
                let (down, ended) = self.c.fail_node(n, t, self.s.ha_restart_delay);
                self.note(
                    t,
                    "event",
                    format!(
                        "{n} fails (NotReady): {} down, HA restart in {}",
                        count(down, "VM"),
                        span(self.s.ha_restart_delay)
                    ),
                );
                self.ended(ended);
            }
            EventKind::RecoverNode(n) => {
                if let Some(i) = self.c.node(n) {
                    self.c.nodes[i].failed = false;
                }
                self.note(t, "event", format!("{n} recovers: Ready, empty"));
            }
            EventKind::AddNodes(nodes) => {
                let list: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
                for n in nodes {
                    self.c.add_node(n.clone());
                }
                self.note(t, "event", format!("{} added: {}", count(list.len(), "node"), names(&list)));
            }
            EventKind::PowerOn(vms) => {
                let mut on = Vec::new();
                for name in vms {
                    if let Some(i) = self.c.vm(name)
                        && self.c.vms[i].status == VmStatus::Off
                    {
                        self.c.vms[i].status = VmStatus::Pending;
                        on.push(name.clone());
                    }
                }
                self.new_pending |= !on.is_empty();
                self.note(t, "event", format!("power on {}: {}", count(on.len(), "VM"), names(&on)));
            }
            EventKind::PowerOff(vms) => {
                let mut ended = Vec::new();
                for name in vms {
                    if let Some(i) = self.c.vm(name) {
                        ended.extend(self.c.power_off(i, t));
                    }
                }
                self.note(t, "event", format!("power off {}: {}", count(vms.len(), "VM"), names(vms)));
                self.ended(ended);
            }
            EventKind::Set { vms, target, change } => {
                for name in vms {
                    if let Some(i) = self.c.vm(name) {
                        change.apply(&mut self.c.vms[i].vm);
                    }
                }
                self.note(t, "event", format!("set {target}: {}", change.describe()));
            }
        }
    }

    /// Records migrations that ended: totals, ping-pong, timeline.
    fn ended(&mut self, ended: Vec<Ended>) {
        for Ended { migration: m, at } in ended {
            let vm = self.c.vms[m.vm].vm.name.clone();
            let secs_taken = at - m.started as f64;
            let gib = m.bytes / GIB;
            let t = at.ceil() as u64;
            match &m.outcome {
                Outcome::Completed => {
                    self.totals.completed += 1;
                    self.totals.gib_moved += gib;
                    self.totals.max_secs = self.totals.max_secs.max(secs_taken);
                    self.totals.mean_secs += secs_taken;
                    // Ping-pong: it left the node it now returns to within the window (the move just made is last).
                    let window = self.s.ping_pong_window;
                    let back = self
                        .c
                        .history
                        .iter()
                        .rev()
                        .skip(1)
                        .any(|h| h.vm == vm && h.from == m.target && h.at + window >= t);
                    if back {
                        self.ping_pong += 1;
                    }
                    let pp = if back { " (ping-pong: it left that node recently)" } else { "" };
                    self.note(
                        t,
                        "migration",
                        format!(
                            "{vm} {} -> {} done ({}, {} in {:.0}s){pp}",
                            m.source,
                            m.target,
                            m.reason.as_str(),
                            human_bytes(m.bytes),
                            secs_taken
                        ),
                    );
                }
                Outcome::TimedOut => {
                    self.totals.timed_out += 1;
                    self.totals.gib_wasted += gib;
                    self.note(
                        t,
                        "migration",
                        format!(
                            "{vm} {} -> {} FAILED: did not converge within {:.0}s (dirty rate {}/s vs bandwidth {}/s)",
                            m.source,
                            m.target,
                            secs_taken,
                            human_bytes(self.c.vms[m.vm].vm.dirty_rate_bytes_per_sec as f64),
                            human_bytes(self.s.migration.bandwidth)
                        ),
                    );
                }
                Outcome::Failed => {
                    self.totals.failed += 1;
                    self.totals.gib_wasted += gib;
                    self.note(
                        t,
                        "migration",
                        format!("{vm} {} -> {} FAILED after {:.0}s (chance failure)", m.source, m.target, secs_taken),
                    );
                }
                Outcome::Aborted(why) => {
                    self.totals.aborted += 1;
                    self.totals.gib_wasted += gib;
                    self.note(t, "migration", format!("{vm} {} -> {} aborted: {why}", m.source, m.target));
                }
            }
            self.migrations.push(MigrationRecord {
                vm,
                from: m.source.clone(),
                to: m.target.clone(),
                reason: m.reason.as_str().into(),
                started: m.started,
                ended: r4(at),
                outcome: m.outcome.as_str().into(),
                gib: r4(gib),
            });
        }
    }

    /// Maintenance states as the operator would label them: Entering until empty, Blocked when the last plan
    /// reported VMs there it could not move, then InMaintenance.
    fn maintenance_states(&mut self, t: u64, plan: Option<&Plan>) {
        for i in 0..self.c.nodes.len() {
            if !self.c.nodes[i].maintenance || self.c.nodes[i].failed {
                continue;
            }
            let name = self.c.nodes[i].node.name.clone();
            let left = self.c.vms_on(&name);
            let old = self.c.nodes[i].maintenance_state;
            let blocked: Vec<&kubedrs_engine::Blocked> = match plan {
                Some(p) => p.blocked.iter().filter(|b| b.node.as_deref() == Some(name.as_str())).collect(),
                None => Vec::new(),
            };
            let new = if left == 0 {
                MaintenanceState::InMaintenance
            } else if !blocked.is_empty() {
                MaintenanceState::Blocked
            } else if plan.is_none() && old == Some(MaintenanceState::Blocked) {
                // Between passes, keep what the last plan said.
                MaintenanceState::Blocked
            } else {
                MaintenanceState::Entering
            };
            if old != Some(new) {
                self.c.nodes[i].maintenance_state = Some(new);
                let text = match new {
                    MaintenanceState::Entering => {
                        format!("{name}: maintenance Entering ({} to move)", count(left, "VM"))
                    }
                    MaintenanceState::InMaintenance => format!("{name}: InMaintenance (empty)"),
                    MaintenanceState::Blocked => format!(
                        "{name}: maintenance Blocked: {}",
                        blocked.iter().map(|b| format!("{} ({})", b.vm, b.why)).collect::<Vec<_>>().join("; ")
                    ),
                };
                self.note(t, "maintenance", text);
            }
        }
    }

    fn pass(&mut self, t: u64, kind: PassKind) -> Result<(), ScenarioError> {
        self.new_pending = false;
        let (snapshot, index) = self.c.snapshot(t);
        let started_at = Instant::now();
        let plan = self.policy.plan(&snapshot);
        self.timing.push(started_at.elapsed().as_micros() as u64);
        let plan = plan.map_err(|e| match e {
            PolicyError::Invalid(e) => self.engine_error(t, &index, e),
            PolicyError::Failed(why) => {
                self.s.error_at("", format!("at {} the policy {} failed: {why}", clock(t as f64), self.policy.name()))
            }
        })?;
        let automation = self.s.pool.automation;
        let mut rec = PassRecord {
            t,
            kind: if kind == PassKind::Balance { "balance" } else { "placement" },
            imbalance_before: r4(plan.imbalance_before),
            imbalance_after: r4(plan.imbalance_after),
            target: r4(plan.target_imbalance),
            load_spread_after: r4(plan.load_spread_after),
            placements: plan.placements.len() as u32,
            moves_planned: plan.moves.len() as u32,
            started: 0,
            recommended: 0,
            deferred: 0,
            rejected: 0,
            blocked: plan.blocked.len() as u32,
            rule_notes: plan.rule_notes.len() as u32,
            baseline: plan.baseline.model.clone(),
            balance_summary: plan.balance_summary.clone(),
        };

        // The operator's gate (automation level, a VM's Manual, the balancing clock, the plan's order and
        // concurrency slots, the VM still on its source); the limits are the plan's own.
        let gate = Gate { automation, paused: false, dry_run: false, balance_due: kind == PassKind::Balance };

        // Placements: executed unless the gate says recommend (Manual) or the plan's order holds them (a VM
        // moved out of the way must leave the node first: planned again when a migration ends).
        let mut placed = Vec::new();
        let mut waiting: Vec<String> = Vec::new();
        // What each node's pods request now: the kubelet's admission, counted as the pass starts things.
        let mut room = Room::of(&snapshot);
        let mut mandatory_deferred = false;
        for p in &plan.placements {
            match gate.of_placement(p) {
                Verdict::Execute => {}
                Verdict::Recommend(_) => {
                    rec.recommended += 1;
                    continue;
                }
                Verdict::Hold(_) => {
                    rec.deferred += 1;
                    mandatory_deferred = true;
                    waiting.push(format!("{} on {} {}", p.vm, p.node, p.waits));
                    continue;
                }
            }
            match self.c.vm(&p.vm) {
                Some(i) if self.c.vms[i].status == VmStatus::Pending && self.c.accepts_vms(&p.node) => {
                    // The kubelet admits the pod only when its requests fit what is left on the node.
                    if let Err(why) = room.check(&self.c.vms[i].vm, &p.node) {
                        rec.deferred += 1;
                        mandatory_deferred = true;
                        waiting.push(format!("{} on {} {why}", p.vm, p.node));
                        continue;
                    }
                    room.take(&self.c.vms[i].vm, &p.node);
                    self.c.place(i, &p.node);
                    placed.push(format!("{}->{}", p.vm, p.node));
                }
                _ => {
                    rec.rejected += 1;
                    self.note(t, "warning", format!("placement of {} on {} not possible now: ignored", p.vm, p.node));
                }
            }
        }
        self.placements += placed.len() as u32;

        // Moves: all at balancing passes; between them only mandatory ones (as the operator does).
        let mut started: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        {
            for m in plan.moves.iter().filter(|m| kind == PassKind::Balance || m.reason.is_mandatory()) {
                let Some(i) = self.c.vm(&m.vm) else {
                    rec.rejected += 1;
                    continue;
                };
                match gate.of_move(m, self.c.vms[i].vm.node.as_deref()) {
                    Verdict::Execute => {}
                    Verdict::Recommend(_) => {
                        rec.recommended += 1;
                        continue;
                    }
                    Verdict::Hold(_) if !m.after.is_empty() || m.deferred => {
                        // A move that waits for others, or for a slot: planned again when a migration ends.
                        rec.deferred += 1;
                        mandatory_deferred |= m.reason.is_mandatory();
                        if !m.after.is_empty() {
                            waiting.push(format!("{} -> {} {}", m.vm, m.to, m.waits));
                        }
                        continue;
                    }
                    Verdict::Hold(why) => {
                        rec.rejected += 1;
                        self.note(t, "warning", format!("move of {} {} -> {} ignored: {why}", m.vm, m.from, m.to));
                        continue;
                    }
                }
                let v = &self.c.vms[i];
                if v.status != VmStatus::Running
                    || self.c.migrating(i)
                    || !self.c.accepts_vms(&m.to)
                    || !v.vm.live_migratable
                {
                    rec.rejected += 1;
                    self.note(
                        t,
                        "warning",
                        format!("move of {} {} -> {} does not match the pool now: ignored", m.vm, m.from, m.to),
                    );
                    continue;
                }
                // The kubelet admits the target pod only when its requests fit what is left on the node.
                if let Err(why) = room.check(&self.c.vms[i].vm, &m.to) {
                    rec.deferred += 1;
                    mandatory_deferred |= m.reason.is_mandatory();
                    waiting.push(format!("{} -> {} {why}", m.vm, m.to));
                    continue;
                }
                room.take(&self.c.vms[i].vm, &m.to);
                let mig = self.c.start_migration(i, &m.to, m.reason, t);
                let note = format!("{} {}->{} ~{:.0}s", m.vm, m.from, m.to, mig.ends_at - t as f64);
                started.entry(m.reason.as_str()).or_default().push(note);
                rec.started += 1;
                self.totals.started += 1;
                *self.totals.by_reason.entry(m.reason.as_str().to_string()).or_default() += 1;
            }
        }
        self.mandatory_waiting = mandatory_deferred;
        self.totals.max_in_flight = self.totals.max_in_flight.max(self.c.migrations.len() as u32);

        // One timeline line per pass that did something, or that found the pool out of balance.
        if !placed.is_empty()
            || rec.started > 0
            || !waiting.is_empty()
            || (kind == PassKind::Balance && rec.recommended > 0)
        {
            let mut parts = Vec::new();
            if !placed.is_empty() {
                parts.push(format!("placed {}: {}", count(placed.len(), "VM"), names(&placed)));
            }
            for (reason, list) in &started {
                parts.push(format!("{} {reason}: {}", count(list.len(), "move"), names(list)));
            }
            if rec.recommended > 0 {
                parts.push(format!("{} recommended only ({:?})", rec.recommended, automation));
            }
            if rec.deferred > 0 {
                parts.push(format!("{} deferred", rec.deferred));
            }
            if !waiting.is_empty() {
                parts.push(format!("{} waiting: {}", count(waiting.len(), "move"), names(&waiting)));
            }
            if kind == PassKind::Balance {
                let head = format!(
                    "imbalance {:.3} -> {:.3} (target {:.3})",
                    rec.imbalance_before, rec.imbalance_after, rec.target
                );
                self.note(t, "pass", format!("{head}; {}", parts.join("; ")));
            } else {
                self.note(t, if placed.is_empty() { "pass" } else { "placement" }, parts.join("; "));
            }
        }
        let unplaced: Vec<String> = plan
            .blocked
            .iter()
            .filter(|b| b.node.is_none() && kind == PassKind::Placement)
            .map(|b| format!("{} ({})", b.vm, b.why))
            .collect();
        if !unplaced.is_empty() {
            self.note(t, "warning", format!("cannot place {}: {}", count(unplaced.len(), "VM"), names(&unplaced)));
        }

        if kind == PassKind::Balance {
            self.imbalance.push(plan.imbalance_before);
            self.targets.push(plan.target_imbalance);
            self.blocked_max = self.blocked_max.max(rec.blocked);
            self.blocked_vm_passes += rec.blocked;
        }
        self.recommendations += rec.recommended;
        self.deferred += rec.deferred;
        self.rejected += rec.rejected;
        self.passes.push(rec);
        self.maintenance_states(t, Some(&plan));
        Ok(())
    }

    /// The engine refused the snapshot: point at the scenario field it came from.
    fn engine_error(&self, t: u64, index: &[usize], e: kubedrs_engine::InvalidSnapshot) -> ScenarioError {
        let field = translate_field(
            &e.field,
            |i| index.get(i).and_then(|&v| self.s.vms.get(v).map(|d| d.origin.clone())),
            |i| self.s.node_origins.get(i).cloned(),
        );
        self.s.error_at(
            &field,
            format!("at {} the engine refused the pool ({}): {}", clock(t as f64), e.field, e.message),
        )
    }

    fn finish(self) -> RunResult {
        let s = self.s;
        let mut totals = self.totals;
        if totals.completed > 0 {
            totals.mean_secs /= totals.completed as f64;
        }
        totals.mean_secs = r4(totals.mean_secs);
        totals.max_secs = r4(totals.max_secs);
        totals.gib_moved = r4(totals.gib_moved);
        totals.gib_wasted = r4(totals.gib_wasted);
        let balancing = self.passes.iter().filter(|p| p.kind == "balance").count() as u32;
        let summary = Summary {
            demand_met: self.steps.demand_met(),
            demand_met_by_group: self.steps.demand_met_by_group(),
            imbalance: Stats::of(&self.imbalance),
            target_imbalance: Stats::of(&self.targets),
            cpu_load_stddev: Stats::of(&self.steps.stddev),
            hottest_node: Stats::of(&self.steps.hottest),
            migrations: totals,
            ping_pong: self.ping_pong,
            placements: self.placements,
            recommendations: self.recommendations,
            deferred: self.deferred,
            rejected: self.rejected,
            blocked_max: self.blocked_max,
            blocked_vm_passes: self.blocked_vm_passes,
            required_rule_violation_minutes: r4(self.steps.required_minutes),
            preferred_rule_violation_minutes: r4(self.steps.preferred_minutes),
            cpu_model_violation_minutes: r4(self.steps.cpu_model_minutes),
            transit_overcommit_node_minutes: r4(self.steps.transit_overcommit_minutes),
            pending_at_end: self.c.vms.iter().filter(|v| v.status == VmStatus::Pending).count() as u32,
            balancing_passes: balancing,
            placement_passes: self.passes.len() as u32 - balancing,
        };
        let total_us: u64 = self.timing.iter().sum();
        let timing = Timing {
            max_decision_ms: r4(self.timing.iter().copied().max().unwrap_or(0) as f64 / 1000.0),
            mean_decision_ms: r4(if self.timing.is_empty() {
                0.0
            } else {
                total_us as f64 / 1000.0 / self.timing.len() as f64
            }),
            total_ms: r4(total_us as f64 / 1000.0),
            pass_micros: self.timing,
        };
        RunResult {
            scenario: s.name.clone(),
            file: s.path.display().to_string(),
            description: s.description.clone(),
            seed: s.seed,
            duration_secs: s.duration,
            step_secs: s.step,
            interval_secs: s.interval,
            automation: format!("{:?}", s.pool.automation),
            migration_threshold: s.pool.migration_threshold,
            summary,
            passes: self.passes,
            steps: self.steps.series,
            migrations: self.migrations,
            timeline: self.timeline,
            timing,
        }
    }
}

/// Maps an engine field path (`vms[3].node`, `pool.migration_threshold`) to the scenario's (`vms[1].node`,
/// `pool.migrationThreshold`): VMs and nodes through their groups, snake_case to camelCase.
pub fn translate_field(
    field: &str,
    vm_origin: impl Fn(usize) -> Option<String>,
    node_origin: impl Fn(usize) -> Option<String>,
) -> String {
    let camel = |s: &str| {
        let mut out = String::new();
        let mut up = false;
        for ch in s.chars() {
            if ch == '_' {
                up = true;
            } else if up {
                out.extend(ch.to_uppercase());
                up = false;
            } else {
                out.push(ch);
            }
        }
        out
    };
    for (prefix, origin) in [("vms[", &vm_origin as &dyn Fn(usize) -> Option<String>), ("nodes[", &node_origin)] {
        if let Some(rest) = field.strip_prefix(prefix)
            && let Some((num, tail)) = rest.split_once(']')
            && let Some(o) = num.parse::<usize>().ok().and_then(origin)
        {
            return format!("{o}{}", camel(tail));
        }
    }
    camel(field)
}

fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// At most a handful of names, then how many more.
fn names(list: &[String]) -> String {
    const SHOWN: usize = 6;
    if list.len() <= SHOWN {
        list.join(", ")
    } else {
        format!("{}, +{} more", list[..SHOWN].join(", "), list.len() - SHOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_fields_map_to_scenario_fields() {
        let vm = |i: usize| (i == 3).then(|| "vms[1]".to_string());
        let node = |i: usize| (i == 0).then(|| "nodes[0]".to_string());
        assert_eq!(translate_field("vms[3].memory.reservation", vm, node), "vms[1].memory.reservation");
        assert_eq!(translate_field("nodes[0].capacity", vm, node), "nodes[0].capacity");
        assert_eq!(translate_field("pool.migration_threshold", vm, node), "pool.migrationThreshold");
    }
}
