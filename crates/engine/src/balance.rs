//! Load balancing: greedy best-move hill-climbing on the pool imbalance.
//!
//! Each step first relieves short nodes (CPU or memory entitlement above capacity) down to [`HEADROOM`]
//! when a node with room can take a VM and stay below it; then it looks at the most loaded nodes as
//! sources and the least loaded as targets (widening the sources when nothing is found), scores every
//! allowed single-VM move by how much it lowers the sum of squared load deviations (an O(1) update of the
//! running sums), keeps those that close a gap wider than the threshold's band plus what they carry and
//! pass the cost-benefit check, and applies the best. It stops when no node is short, the imbalance is within
//! the target and no two nodes are further apart than the pairwise gap; when the per-pass cap is reached;
//! or when no move pays.
//!
//! Every test that lets a move happen is per node or per pair of nodes, never per pool size: a pool of
//! 1,000 nodes moves its VMs as often as a pool of 20 does under the same load (see docs/algorithm.md, "When to stop").

use super::cost;
use super::model::VmAutomation;
use super::plan::Reason;
use super::state::PoolState;
use std::cmp::Ordering;

/// Targets considered per step: the least loaded nodes.
const TARGETS: usize = 64;
/// Sources considered per step before widening.
const FIRST_SOURCES: usize = 8;
/// Score taken off a move per Preferred rule it breaks (and given back per one it mends).
const SOFT_PENALTY: f64 = 0.05;
/// A node whose CPU or memory entitlement is above its capacity is short: its VMs get less than they are
/// entitled to. It is relieved down to this fraction of its capacity, onto nodes that stay at or below it:
/// demand is sampled every few minutes and peaks between samples, and a node relieved to just under 100%
/// is short again at the next peak.
pub const HEADROOM: f64 = 0.9;
/// Balancing never takes a VM back to a node it left less than this long ago (ping-pong).
pub const PING_PONG_SECS: u64 = 2 * 3600;
/// VMware's target shrinks with the square root of the pool size; past this many nodes kubedrs keeps the
/// target of a pool this size, since node loads carry sampling noise that no migration removes.
const TARGET_NODES_CAP: usize = 16;

/// Target imbalance for threshold `t` on `n` nodes: `0.1 * (5 - t) / sqrt(min(n, 16))` (design note §2,
/// with the pool size capped).
pub fn target_imbalance(threshold: u8, n: usize) -> f64 {
    if threshold <= 1 {
        return f64::INFINITY;
    }
    0.1 * (5.0 - threshold as f64) / (n.clamp(1, TARGET_NODES_CAP) as f64).sqrt()
}

/// Largest allowed gap between the most and least loaded node, by threshold (VMware's pairwise check).
pub fn pairwise_gap(threshold: u8) -> f64 {
    match threshold {
        0..=1 => f64::INFINITY,
        2 => 0.30,
        3 => 0.20,
        4 => 0.10,
        _ => 0.05,
    }
}

/// Smallest gap between source and target, beyond the load that moves, that a balancing move may close:
/// half the pairwise gap. Narrower gaps are noise at this threshold.
pub fn band(threshold: u8) -> f64 {
    pairwise_gap(threshold) / 2.0
}

/// A balancing move as chosen.
pub struct Chosen {
    pub vm: usize,
    pub from: usize,
    pub to: usize,
    pub goodness: f64,
    pub load_from: f64,
    pub load_to: f64,
    /// For a move off a short node: the resource (0 CPU, 1 memory) above capacity and its ratio.
    pub relieves: Option<(usize, f64)>,
}

struct Candidate {
    score: f64,
    vm: usize,
    from: usize,
    to: usize,
}

/// Runs balancing on the state; returns the moves in order and why it stopped.
pub fn balance(st: &mut PoolState) -> (Vec<Chosen>, String) {
    let pool = &st.snap.pool;
    let threshold = pool.migration_threshold;
    if threshold <= 1 {
        return (vec![], "threshold 1: mandatory moves only, no balancing".into());
    }
    let target = target_imbalance(threshold, st.n_counted());
    let gap = pairwise_gap(threshold);
    let cap = pool.max_migrations_per_pass as usize;
    let mut chosen = Vec::new();
    let stop = loop {
        let imbalance = st.imbalance();
        let hot = shortest(st);
        if imbalance <= target && st.load_spread() <= gap && hot.is_none() {
            break format!(
                "within target: imbalance {imbalance:.3} <= {target:.3}, spread {:.2} <= {gap:.2}, no node short",
                st.load_spread()
            );
        }
        if chosen.len() >= cap {
            break format!(
                "stopped at maxMigrationsPerPass ({cap}) with imbalance {imbalance:.3} (target {target:.3})"
            );
        }
        let Some(c) = hot.and_then(|_| relief_move(st)).or_else(|| best_move(st)) else {
            break match hot {
                Some((h, peak)) => format!(
                    "no further move pays for itself (imbalance {imbalance:.3}, target {target:.3}); {} is short \
                     ({:.0}%) and has no VM that another node can take without going above {:.0}%",
                    st.nodes[h].name,
                    peak * 100.0,
                    HEADROOM * 100.0
                ),
                None => format!("no further move pays for itself (imbalance {imbalance:.3}, target {target:.3})"),
            };
        };
        let ssd_before = st.ssd();
        let imbalance_before = st.imbalance();
        let (load_from, load_to) = (st.load(c.from), st.load(c.to));
        let relieves = st.short(c.from);
        st.remove(c.vm);
        st.place(c.vm, c.to);
        st.reason[c.vm] = Some(Reason::Balance);
        if st.vms[c.vm].automation != VmAutomation::Manual {
            st.take_slot(c.from, c.to);
        }
        debug_assert!(st.ssd() <= ssd_before + 1e-9);
        chosen.push(Chosen {
            vm: c.vm,
            from: c.from,
            to: c.to,
            goodness: imbalance_before - st.imbalance(),
            load_from,
            load_to,
            relieves,
        });
    };
    (chosen, stop)
}

/// May balancing put `v` (now on `s`) on `t`: rules, CPU model, room, no ping-pong, a free slot?
fn target_ok(st: &PoolState, v: usize, s: usize, t: usize, manual: bool) -> bool {
    t != s
        && st.allowed(v, t, false)
        && st.reservation_fits(v, t)
        && st.entitlement_fits(v, t)
        && st.since_left(v, t).is_none_or(|secs| secs >= PING_PONG_SECS)
        && (manual || st.slot_free(s, t))
}

/// The counted node most short of CPU or memory, and its entitlement ratio on that resource.
fn shortest(st: &PoolState) -> Option<(usize, f64)> {
    (0..st.nodes.len())
        .filter(|&h| st.counted[h])
        .filter_map(|h| st.short(h).map(|(_, ratio)| (h, ratio)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
}

/// The move that takes the most load above [`HEADROOM`] off a short node (entitlement above capacity), to a
/// node that stays at or below it and that lowers the imbalance; ties go to the move that lowers it most.
/// No cost-benefit test: the short node's VMs lack resources now.
fn relief_move(st: &PoolState) -> Option<Candidate> {
    let excess = |h: usize, less: [f64; 2]| {
        (0..2).map(|r| st.ratio(h, r) - less[r] / st.cap[h][r] - HEADROOM).fold(0.0, f64::max)
    };
    let mut hot: Vec<(usize, f64)> = (0..st.nodes.len())
        .filter(|&h| st.counted[h] && st.short(h).is_some())
        .map(|h| (h, excess(h, [0.0; 2])))
        .filter(|e| e.1 > 0.0)
        .collect();
    hot.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let targets: Vec<usize> = (0..st.nodes.len()).filter(|&h| st.nodes[h].state.accepts_vms()).collect();
    let ssd = st.ssd();
    // The best move so far and the relief it brings; its score is its gain.
    let mut best: Option<(f64, Candidate)> = None;
    for &(s, before) in hot.iter().take(FIRST_SOURCES) {
        for &v in &st.node_vms[s] {
            let vm = st.vms[v];
            if !st.balance_candidate(v)
                || !cost::converges(vm.dirty_rate_bytes_per_sec, st.snap.pool.migration_bandwidth_bytes_per_sec)
            {
                continue;
            }
            let relief = before - excess(s, st.ent[v]);
            if relief <= 0.0 {
                continue;
            }
            let manual = vm.automation == VmAutomation::Manual;
            for &t in &targets {
                let stays_cool = (0..2).all(|r| st.ratio(t, r) + st.ent[v][r] / st.cap[t][r] <= HEADROOM);
                if !stays_cool || !target_ok(st, v, s, t, manual) {
                    continue;
                }
                // Relief that raised the imbalance would undo itself at the next pass.
                let gain = ssd - st.ssd_after(&[(s, -st.vm_load_on(v, s)), (t, st.vm_load_on(v, t))]);
                if gain <= 0.0 {
                    continue;
                }
                let better = best.as_ref().is_none_or(|(r, b)| match relief.total_cmp(r) {
                    Ordering::Equal => gain > b.score,
                    o => o == Ordering::Greater,
                });
                if better {
                    best = Some((relief, Candidate { score: gain, vm: v, from: s, to: t }));
                }
            }
        }
    }
    best.map(|(_, c)| c)
}

fn best_move(st: &PoolState) -> Option<Candidate> {
    let mut sources: Vec<usize> =
        (0..st.nodes.len()).filter(|&h| st.counted[h] && !st.node_vms[h].is_empty()).collect();
    let mut targets: Vec<usize> = (0..st.nodes.len()).filter(|&h| st.nodes[h].state.accepts_vms()).collect();
    if targets.is_empty() || sources.is_empty() {
        return None;
    }
    let loads: Vec<f64> = (0..st.nodes.len()).map(|h| st.load(h)).collect();
    sources.sort_by(|&a, &b| loads[b].total_cmp(&loads[a]).then(a.cmp(&b)));
    targets.sort_by(|&a, &b| loads[a].total_cmp(&loads[b]).then(a.cmp(&b)));
    targets.truncate(TARGETS);
    let mut width = FIRST_SOURCES;
    loop {
        let best = sources.iter().take(width).filter_map(|&s| best_from(st, &loads, s, &targets)).fold(None, pick);
        if best.is_some() || width >= sources.len() {
            return best;
        }
        width *= 8;
    }
}

fn pick(best: Option<Candidate>, c: Candidate) -> Option<Candidate> {
    match best {
        Some(b) if b.score >= c.score => Some(b),
        _ => Some(c),
    }
}

/// The best move off one source node.
fn best_from(st: &PoolState, loads: &[f64], s: usize, targets: &[usize]) -> Option<Candidate> {
    let pool = &st.snap.pool;
    let risk = cost::risk_factor(pool.migration_threshold);
    let band = band(pool.migration_threshold);
    let ssd = st.ssd();
    let mut best: Option<Candidate> = None;
    for &v in &st.node_vms[s] {
        if !st.balance_candidate(v) {
            continue;
        }
        let vm = st.vms[v];
        if !cost::converges(vm.dirty_rate_bytes_per_sec, pool.migration_bandwidth_bytes_per_sec) {
            continue;
        }
        let migration = cost::migration_secs(
            vm.memory_size_bytes,
            vm.dirty_rate_bytes_per_sec,
            pool.migration_bandwidth_bytes_per_sec,
        );
        let soft_here = st.soft_breaks(v, s) as f64;
        let out = st.vm_load_on(v, s);
        let manual = vm.automation == VmAutomation::Manual;
        for &t in targets {
            if loads[t] >= loads[s] {
                break;
            }
            if !target_ok(st, v, s, t, manual) {
                continue;
            }
            let inn = st.vm_load_on(v, t);
            let gain = ssd - st.ssd_after(&[(s, -out), (t, inn)]);
            let moved = (out + inn) / 2.0;
            // gain = 2 * moved * (gap - moved) at equal capacities: the gap beyond the moved load must
            // exceed the band.
            if gain < 2.0 * moved * band {
                continue;
            }
            // Relieving a node short of CPU or memory always pays; otherwise the move must earn its migration.
            let relieves_overload = st.short(s).is_some();
            let going_back = if st.since_left(v, t).is_some() { 2.0 } else { 1.0 };
            if !relieves_overload && cost::benefit_secs(loads[s] - loads[t], moved) < going_back * risk * migration {
                continue;
            }
            let score = gain - SOFT_PENALTY * (st.soft_breaks(v, t) as f64 - soft_here);
            if score <= 0.0 {
                continue;
            }
            if best.as_ref().is_none_or(|b| score > b.score) {
                best = Some(Candidate { score, vm: v, from: s, to: t });
            }
        }
    }
    best
}
