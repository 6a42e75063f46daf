//! Moves that must happen whatever the threshold, in the design note's order: evacuate nodes in
//! maintenance, fix broken hard rules (and CPU models), fix reservations that no longer fit. Then the initial
//! placement of new VMs, as one batch.

use super::assign::{Outcome, assign, assign_within};
use super::model::{NodeState, RuleKind, VmAutomation};
use super::plan::{Blocked, BlockedReason, Placement, Reason, RuleNote};
use super::state::PoolState;

/// What the mandatory steps could not do, and the placements they made.
#[derive(Default)]
pub struct Findings {
    pub blocked: Vec<Blocked>,
    pub notes: Vec<RuleNote>,
    pub placements: Vec<Placement>,
}

impl Findings {
    fn block(&mut self, st: &PoolState, v: usize, wanted: Reason, reason: BlockedReason) {
        let vm = st.vms[v];
        let node = st.pos[v].or(st.origin[v]).map(|h| st.nodes[h].name.clone());
        let why = explain(&reason, wanted);
        self.blocked.push(Blocked { vm: vm.name.clone(), node, wanted, reason, why });
    }

    fn record(&mut self, st: &PoolState, outcomes: Vec<Outcome>, wanted: Reason) {
        for o in outcomes {
            match o.result {
                Ok(h) => {
                    if o.relaxed {
                        let broken: Vec<String> = st.vm_rules[o.vm]
                            .iter()
                            .filter(|&&r| !st.rules[r].is_hard() && !st.rule_allows(r, o.vm, h))
                            .map(|&r| st.rules[r].rule.name.clone())
                            .collect();
                        for rule in broken {
                            self.notes.push(RuleNote {
                                rule,
                                vms: vec![st.vms[o.vm].name.clone()],
                                why: format!(
                                    "preferred rule relaxed: no node satisfied it for the {} of this VM",
                                    wanted.as_str()
                                ),
                            });
                        }
                    }
                    if wanted == Reason::Placement {
                        self.placements.push(Placement {
                            vm: st.vms[o.vm].name.clone(),
                            node: st.nodes[h].name.clone(),
                            why: format!(
                                "best balance among the nodes where its reservation fits (load after {:.0}%)",
                                st.load(h) * 100.0
                            ),
                            after: Vec::new(),
                            waits: String::new(),
                        });
                    }
                }
                Err(reason) => self.block(st, o.vm, wanted, reason),
            }
        }
    }
}

/// What a blocked VM could not do, in words.
pub fn wanted_words(wanted: Reason) -> &'static str {
    match wanted {
        Reason::Maintenance => "cannot leave its node for maintenance",
        Reason::Rule => "cannot be moved to satisfy its rules",
        Reason::Reservation => "cannot be moved off its overcommitted node",
        Reason::Balance => "cannot be moved",
        Reason::Placement => "cannot be placed",
    }
}

/// Why a blocked VM is blocked, in words.
fn explain(reason: &BlockedReason, wanted: Reason) -> String {
    let what = wanted_words(wanted);
    let because = match reason {
        BlockedReason::NoCapacity => "no eligible node has room for its reservation".to_string(),
        BlockedReason::Rule { rule } => format!("rule {rule} leaves no eligible node"),
        BlockedReason::CpuModel { model } => format!("no ready node of the pool runs its CPU model {model}"),
        BlockedReason::AutomationDisabled => "its kubedrs.io/automation is Disabled".to_string(),
        BlockedReason::NotLiveMigratable => "KubeVirt reports it is not live-migratable".to_string(),
        BlockedReason::SourceNotReady => "its node is not ready, so it cannot be live-migrated".to_string(),
        BlockedReason::InFlight => "it is already migrating".to_string(),
        BlockedReason::NoEligibleNode => "no node of the pool is ready to take VMs".to_string(),
        BlockedReason::BackingOff { failures, retry_in_secs } => {
            format!("its last {failures} migration(s) failed; next try in {retry_in_secs} s")
        }
        BlockedReason::Cycle { vms } => format!("its move is part of a cycle through full nodes: {}", vms.join(", ")),
    };
    format!("{what}: {because}")
}

/// Splits VMs that must move into those kubedrs can move and the blocked rest.
fn movable_or_block(st: &PoolState, found: &mut Findings, vms: Vec<usize>, wanted: Reason) -> Vec<usize> {
    let mut out = Vec::new();
    for v in vms {
        let vm = st.vms[v];
        let blocked = if st.in_flight[v] {
            Some(BlockedReason::InFlight)
        } else if let Some(retry_in_secs) = st.backoff_left(v) {
            Some(BlockedReason::BackingOff { failures: st.failures_in_a_row[v], retry_in_secs })
        } else if vm.automation == VmAutomation::Disabled {
            Some(BlockedReason::AutomationDisabled)
        } else if !vm.live_migratable {
            Some(BlockedReason::NotLiveMigratable)
        } else if st.pos[v].is_some_and(|h| st.nodes[h].state == NodeState::NotReady) {
            Some(BlockedReason::SourceNotReady)
        } else {
            None
        };
        match blocked {
            // Already on its way out: not blocked, nothing to do.
            Some(BlockedReason::InFlight) => {}
            Some(reason) => found.block(st, v, wanted, reason),
            None => out.push(v),
        }
    }
    out
}

/// Every VM on a node in maintenance gets a target.
pub fn evacuate(st: &mut PoolState, found: &mut Findings) {
    let leaving: Vec<usize> = (0..st.nodes.len())
        .filter(|&h| st.nodes[h].state.in_maintenance())
        .flat_map(|h| st.node_vms[h].clone())
        .collect();
    let movable = movable_or_block(st, found, leaving, Reason::Maintenance);
    if !movable.is_empty() {
        let mut outcomes = assign(st, &movable, Reason::Maintenance, None);
        rescue(st, &mut outcomes, Reason::Maintenance, None);
        found.record(st, outcomes, Reason::Maintenance);
    }
}

/// VMs that break a hard rule or their CPU model where they are, and the rule they break.
fn rule_breakers(st: &PoolState) -> Vec<(usize, Option<usize>)> {
    let mut out: Vec<(usize, Option<usize>)> = Vec::new();
    for v in 0..st.vms.len() {
        if let Some(h) = st.pos[v]
            && !st.vms[v].cpu_requirement.allows(st.nodes[h])
        {
            out.push((v, None));
        }
    }
    for (r, rule) in st.rules.iter().enumerate().filter(|(_, r)| r.is_hard()) {
        match &rule.rule.kind {
            RuleKind::VMNodeAffinity { .. } => {
                out.extend(
                    rule.members
                        .iter()
                        .filter(|&&v| st.pos[v].is_some_and(|h| !rule.node_ok[h]))
                        .map(|&v| (v, Some(r))),
                );
            }
            RuleKind::VMAntiAffinity { .. } => {
                // On a crowded node, keep the member that is hardest to move (immovable, then biggest memory).
                let mut by_node: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
                for &v in &rule.members {
                    if let Some(h) = st.pos[v] {
                        by_node.entry(h).or_default().push(v);
                    }
                }
                for (_, mut members) in by_node.into_iter().filter(|(_, m)| m.len() > 1) {
                    members.sort_by_key(|&v| (st.movable(v), std::cmp::Reverse(st.vms[v].memory_size_bytes), v));
                    out.extend(members[1..].iter().map(|&v| (v, Some(r))));
                }
            }
            RuleKind::VMAffinity { .. } => {
                // The group gathers where most of it already is.
                let mut by_node: std::collections::BTreeMap<usize, usize> = Default::default();
                for &v in &rule.members {
                    if let Some(h) = st.pos[v] {
                        *by_node.entry(h).or_default() += 1;
                    }
                }
                if by_node.len() > 1 {
                    let home = by_node.iter().max_by_key(|(h, n)| (**n, std::cmp::Reverse(**h))).map(|(h, _)| *h);
                    out.extend(
                        rule.members
                            .iter()
                            .filter(|&&v| st.pos[v].is_some() && st.pos[v] != home)
                            .map(|&v| (v, Some(r))),
                    );
                }
            }
        }
    }
    out.sort();
    out.dedup_by_key(|(v, _)| *v);
    out
}

/// Moves VMs that break a hard rule or their CPU model to nodes where they don't.
pub fn fix_rules(st: &mut PoolState, found: &mut Findings) {
    let breakers = rule_breakers(st);
    if breakers.is_empty() {
        return;
    }
    let vms: Vec<usize> = breakers.iter().map(|(v, _)| *v).collect();
    let movable = movable_or_block(st, found, vms, Reason::Rule);
    let mut outcomes = assign(st, &movable, Reason::Rule, None);
    rescue(st, &mut outcomes, Reason::Rule, None);
    let fixed: std::collections::BTreeSet<usize> = outcomes.iter().filter(|o| o.result.is_ok()).map(|o| o.vm).collect();
    found.record(st, outcomes, Reason::Rule);
    // A required rule still broken after the plan is reported on the rule too.
    for (v, r) in breakers.into_iter().filter(|(v, _)| !fixed.contains(v)) {
        let (rule, why) = match r {
            Some(r) => {
                (st.rules[r].rule.name.clone(), "required rule still broken: this VM cannot be moved (see blocked VMs)")
            }
            None => (
                "cpu-model".to_string(),
                "runs on a node that lacks its CPU model and cannot be moved (see blocked VMs)",
            ),
        };
        found.notes.push(RuleNote { rule, vms: vec![st.vms[v].name.clone()], why: why.to_string() });
    }
}

/// Moves VMs off nodes whose reservations exceed their capacity. A VM whose move alone ends the excess goes
/// first, the cheapest migration of those; otherwise the biggest reservation. A VM that cannot leave (pinned
/// to the node, no room anywhere even after making room) is passed over for the next; it is reported only when
/// the node stays over.
pub fn fix_reservations(st: &mut PoolState, found: &mut Findings) {
    for h in 0..st.nodes.len() {
        if !st.counted[h] {
            continue;
        }
        let cap = st.nodes[h].capacity;
        let over = |st: &PoolState| st.node_res[h][0] > cap.cpu_millis || st.node_res[h][1] > cap.memory_bytes;
        if !over(st) {
            continue;
        }
        let already_blocked =
            |st: &PoolState, found: &Findings, v: usize| found.blocked.iter().any(|b| b.vm == st.vms[v].name);
        let mut failed: Vec<Outcome> = Vec::new();
        let mut tried: Vec<usize> = Vec::new();
        while over(st) {
            let excess =
                [st.node_res[h][0].saturating_sub(cap.cpu_millis), st.node_res[h][1].saturating_sub(cap.memory_bytes)];
            let ends = |v: usize| st.vms[v].cpu.reservation >= excess[0] && st.vms[v].memory.reservation >= excess[1];
            let secs = |v: usize| st.vms[v].memory_size_bytes;
            let next = st.node_vms[h]
                .iter()
                .copied()
                .filter(|&v| {
                    st.movable(v) && st.reason[v].is_none() && !tried.contains(&v) && !already_blocked(st, found, v)
                })
                .min_by(|&a, &b| {
                    ends(b)
                        .cmp(&ends(a))
                        .then_with(|| {
                            if ends(a) {
                                secs(a).cmp(&secs(b))
                            } else {
                                st.vms[b].reservation().cmp(&st.vms[a].reservation())
                            }
                        })
                        .then(a.cmp(&b))
                });
            let Some(v) = next else { break };
            tried.push(v);
            let mut outcomes = assign(st, &[v], Reason::Reservation, Some(h));
            rescue(st, &mut outcomes, Reason::Reservation, Some(h));
            let (ok, bad): (Vec<Outcome>, Vec<Outcome>) = outcomes.into_iter().partition(|o| o.result.is_ok());
            found.record(st, ok, Reason::Reservation);
            failed.extend(bad);
        }
        if over(st) {
            found.record(st, failed, Reason::Reservation);
        }
    }
}

/// A snapshot of where some VMs are planned, to undo a trial.
type Saved = Vec<(usize, Option<usize>, Option<Reason>)>;

fn save(st: &PoolState, vms: &[usize]) -> Saved {
    vms.iter().map(|&v| (v, st.pos[v], st.reason[v])).collect()
}

fn restore(st: &mut PoolState, saved: &Saved) {
    for &(v, _, _) in saved {
        st.remove(v);
    }
    for &(v, h, r) in saved {
        if let Some(h) = h {
            st.place(v, h);
        }
        st.reason[v] = r;
    }
}

/// Hard affinity partners of `v` (transitively) that kubedrs may move and this plan has not moved.
fn group_of(st: &PoolState, v: usize) -> Vec<usize> {
    let mut group = vec![v];
    let mut i = 0;
    while i < group.len() {
        let u = group[i];
        for &r in &st.vm_rules[u] {
            if st.rules[r].is_hard() && matches!(st.rules[r].rule.kind, RuleKind::VMAffinity { .. }) {
                for &w in &st.rules[r].members {
                    if !group.contains(&w) && st.pos[w].is_some() && st.movable(w) && st.reason[w].is_none() {
                        group.push(w);
                    }
                }
            }
        }
        i += 1;
    }
    group
}

/// Steps of the combination search per make-room trial.
const ROOM_BUDGET: usize = 5_000;
/// VMs considered for moving out of the way, cheapest migrations first.
const ROOM_CANDIDATES: usize = 12;

/// For each VM a mandatory step left without a node: move its Required affinity group with it, and when that
/// is not enough, move one or two other VMs out of the way (cheapest migrations first, VMs on the nodes it may
/// use before the others), as long as the whole set of mandatory moves can still be carried out in some order.
fn rescue(st: &mut PoolState, outcomes: &mut [Outcome], reason: Reason, exclude: Option<usize>) {
    for i in 0..outcomes.len() {
        let v = outcomes[i].vm;
        let Err(why) = &outcomes[i].result else { continue };
        if !matches!(why, BlockedReason::NoCapacity | BlockedReason::Rule { .. }) {
            continue;
        }
        // The VM's group, and the rest of the batch (which may take other nodes to leave room).
        let mut set = group_of(st, v);
        let alone = set.len() == 1;
        for o in outcomes.iter() {
            if !set.contains(&o.vm) {
                set.push(o.vm);
            }
        }
        // The group alone.
        if !alone {
            let saved = save(st, &set);
            let tried = assign_within(st, &set, reason, exclude, ROOM_BUDGET);
            if tried.iter().all(|o| o.result.is_ok()) && super::order::orderable(st) {
                adopt(outcomes, &tried);
                settle(st, &set, &saved);
                for &u in set.iter().filter(|&&u| u != v) {
                    st.aside[u] = Some((false, v));
                }
                continue;
            }
            restore(st, &saved);
        }
        // Others out of the way.
        let eligible: Vec<bool> = (0..st.nodes.len()).map(|h| Some(h) != exclude && st.allowed(v, h, false)).collect();
        let bw = st.snap.pool.migration_bandwidth_bytes_per_sec;
        let secs =
            |u: usize| super::cost::migration_secs(st.vms[u].memory_size_bytes, st.vms[u].dirty_rate_bytes_per_sec, bw);
        let mut cands: Vec<(bool, f64, usize)> = (0..st.vms.len())
            .filter(|&u| {
                !set.contains(&u)
                    && st.reason[u].is_none()
                    && st.movable(u)
                    && st.backoff_left(u).is_none()
                    && st.pos[u].is_some_and(|h| st.nodes[h].state.accepts_vms() && Some(h) != exclude)
            })
            .map(|u| (!eligible[st.pos[u].unwrap_or_default()], secs(u), u))
            .collect();
        cands.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        cands.truncate(ROOM_CANDIDATES);
        let mut trials: Vec<(f64, Vec<usize>)> = cands.iter().map(|c| (c.1, vec![c.2])).collect();
        for a in 0..cands.len() {
            for b in a + 1..cands.len() {
                trials.push((cands[a].1 + cands[b].1, vec![cands[a].2, cands[b].2]));
            }
        }
        // Fewer moves first, then the cheapest.
        trials.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then(a.0.total_cmp(&b.0)).then(a.1.cmp(&b.1)));
        set.sort_unstable();
        for (_, extra) in trials {
            let all: Vec<usize> = set.iter().chain(&extra).copied().collect();
            let saved = save(st, &all);
            let tried = assign_within(st, &all, reason, exclude, ROOM_BUDGET);
            let moved_all = extra.iter().all(|&u| st.pos[u] != saved.iter().find(|s| s.0 == u).and_then(|s| s.1));
            if moved_all && tried.iter().all(|o| o.result.is_ok()) && super::order::orderable(st) {
                adopt(outcomes, &tried);
                settle(st, &all, &saved);
                for &u in &all {
                    if u != v {
                        st.aside[u] = Some((extra.contains(&u), v));
                    }
                }
                break;
            }
            restore(st, &saved);
        }
    }
}

/// Takes the results of a successful trial for the VMs it shares with `outcomes`.
fn adopt(outcomes: &mut [Outcome], tried: &[Outcome]) {
    for o in outcomes.iter_mut() {
        if let Some(t) = tried.iter().find(|t| t.vm == o.vm) {
            *o = Outcome { vm: t.vm, result: t.result.clone(), relaxed: t.relaxed };
        }
    }
}

/// After a successful trial: a VM that stayed where it was keeps no reason (balancing may still move it).
fn settle(st: &mut PoolState, vms: &[usize], saved: &Saved) {
    for &v in vms {
        if let Some(&(_, h, r)) = saved.iter().find(|s| s.0 == v)
            && st.pos[v] == h
        {
            st.reason[v] = r;
        }
    }
}

/// Places every VM that has no node yet, as one batch. A VM blocked only by fragmentation (no node has
/// room for its reservation, but moving one VM away would make room) gets that move planned first.
pub fn place_new(st: &mut PoolState, found: &mut Findings) {
    let pending: Vec<usize> = (0..st.vms.len()).filter(|&v| st.origin[v].is_none()).collect();
    if pending.is_empty() {
        return;
    }
    let mut outcomes = assign(st, &pending, Reason::Placement, None);
    for o in outcomes.iter_mut() {
        if o.result == Err(BlockedReason::NoCapacity)
            && let Some(h) = make_room(st, o.vm)
        {
            st.place(o.vm, h);
            st.reason[o.vm] = Some(Reason::Placement);
            o.result = Ok(h);
        }
    }
    found.record(st, outcomes, Reason::Placement);
}

/// Finds a node where moving one VM elsewhere frees room for `v`'s reservation; plans that move and
/// returns the node. Nodes with the most free reservation are tried first.
fn make_room(st: &mut PoolState, v: usize) -> Option<usize> {
    let mut nodes: Vec<usize> = (0..st.nodes.len()).filter(|&h| st.allowed(v, h, false)).collect();
    let free = |st: &PoolState, h: usize| {
        let c = st.nodes[h].capacity;
        c.cpu_millis.saturating_sub(st.node_res[h][0]) + (c.memory_bytes.saturating_sub(st.node_res[h][1]) >> 20)
    };
    nodes.sort_by_key(|&h| (std::cmp::Reverse(free(st, h)), h));
    for h in nodes {
        let candidates: Vec<usize> =
            st.node_vms[h].iter().copied().filter(|&u| st.movable(u) && st.reason[u].is_none()).collect();
        for u in candidates {
            st.remove(u);
            if st.reservation_fits(v, h) {
                let ctx = super::assign::Ctx { exclude: Some(h) };
                if let Some(to) = super::assign::best_node(st, &ctx, u, false) {
                    st.place(u, to);
                    st.reason[u] = Some(Reason::Placement);
                    return Some(h);
                }
            }
            st.place(u, h);
        }
    }
    None
}
