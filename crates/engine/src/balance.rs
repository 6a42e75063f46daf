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
use super::model::{Resource, VmAutomation};
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
    pub relieves: Option<(Resource, f64)>,
}

struct Candidate {
    score: f64,
    vm: usize,
    from: usize,
    to: usize,
    /// Estimated migration time: ranks moves of equal benefit.
    secs: f64,
}

/// A score on a fixed grid, so that two moves of equal benefit compare equal whatever the float noise.
fn grid(x: f64) -> i64 {
    (x * 1e12).round() as i64
}

/// Is `c` a better move than `b`: more benefit; at equal benefit the cheaper migration; then by name.
fn beats(c: &Candidate, b: &Candidate) -> bool {
    grid(c.score)
        .cmp(&grid(b.score))
        .then(grid(b.secs / 1e9).cmp(&grid(c.secs / 1e9)))
        .then(b.vm.cmp(&c.vm))
        .then(b.to.cmp(&c.to))
        == Ordering::Greater
}

fn secs_of(st: &PoolState, v: usize) -> f64 {
    let vm = st.vms[v];
    cost::migration_secs(
        vm.memory_size_bytes,
        vm.dirty_rate_bytes_per_sec,
        st.snap.pool.migration_bandwidth_bytes_per_sec,
    )
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
    let mut singles_exhausted = false;
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
        // Once no single move qualified, only swaps are looked for (the single-move search over every
        // source is the expensive part of a pass, and a swap rarely opens a single move).
        let single = if singles_exhausted { None } else { hot.and_then(|_| relief_move(st)).or_else(|| best_move(st)) };
        singles_exhausted |= single.is_none();
        // Look-ahead: when no single move helps, two may. A swap of two VMs for a short node (one node short
        // of CPU, the other of memory); else a chain: a VM leaves a node so that a VM of a hotter node fits.
        let pair = if single.is_none() && chosen.len() + 2 <= cap {
            hot.and_then(|_| swap_move(st)).map(|(a, b)| (b, a)).or_else(|| chain_move(st))
        } else {
            None
        };
        if let Some((first, second)) = pair {
            for c in [first, second] {
                let (load_from, load_to) = (st.load(c.from), st.load(c.to));
                let relieves = st.short(c.from);
                let imbalance_before = st.imbalance();
                st.remove(c.vm);
                st.place(c.vm, c.to);
                st.reason[c.vm] = Some(Reason::Balance);
                if st.vms[c.vm].automation != VmAutomation::Manual {
                    st.take_slot(c.from, c.to);
                }
                chosen.push(Chosen {
                    vm: c.vm,
                    from: c.from,
                    to: c.to,
                    goodness: imbalance_before - st.imbalance(),
                    load_from,
                    load_to,
                    relieves,
                });
            }
            continue;
        }
        let Some(c) = single else {
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
        Resource::ALL
            .map(|r| st.ratio(h, r) - less[r.index()] / st.cap[h][r.index()] - HEADROOM)
            .into_iter()
            .fold(0.0, f64::max)
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
                let stays_cool = Resource::ALL
                    .into_iter()
                    .all(|r| st.ratio(t, r) + st.ent[v][r.index()] / st.cap[t][r.index()] <= HEADROOM);
                if !stays_cool || !target_ok(st, v, s, t, manual) {
                    continue;
                }
                // Relief that raised the imbalance would undo itself at the next pass.
                let gain = ssd - st.ssd_after(&[(s, -st.vm_load_on(v, s)), (t, st.vm_load_on(v, t))]);
                if gain <= 0.0 {
                    continue;
                }
                // The most relief; at equal relief (every VM that ends the shortage) the cheapest migration,
                // then the best balance.
                let c = Candidate { score: gain, vm: v, from: s, to: t, secs: secs_of(st, v) };
                let better = best.as_ref().is_none_or(|(r, b)| match grid(relief).cmp(&grid(*r)) {
                    Ordering::Equal => match grid(b.secs / 1e9).cmp(&grid(c.secs / 1e9)) {
                        Ordering::Equal => beats(&c, b),
                        o => o == Ordering::Greater,
                    },
                    o => o == Ordering::Greater,
                });
                if better {
                    best = Some((relief, c));
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
        Some(b) if !beats(&c, &b) => Some(b),
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
            let c = Candidate { score, vm: v, from: s, to: t, secs: migration };
            if best.as_ref().is_none_or(|b| beats(&c, b)) {
                best = Some(c);
            }
        }
    }
    best
}

/// VMs per node a swap considers, and nodes it pairs with a short one.
const SWAP_VMS: usize = 8;
const SWAP_NODES: usize = 16;

/// Entitlement above capacity of a node, summed over CPU and memory, with `ent` its VMs' entitlement.
fn shortfall(st: &PoolState, h: usize, ent: [f64; 2]) -> f64 {
    (0..2).map(|r| (ent[r] / st.cap[h][r] - 1.0).max(0.0)).sum()
}

/// The best swap of a VM on a short node with a VM on another node: it must lower the two nodes' total
/// shortfall and make neither short of a resource it was not short of; the biggest drop wins, then the best
/// balance, then the cheapest pair of migrations. Bounded: the 4 shortest nodes, the 16 nodes with the most
/// room on the short resource, 8 VMs on each side. Returns (the move off the short node, the move back).
fn swap_move(st: &mut PoolState) -> Option<(Candidate, Candidate)> {
    let bw = st.snap.pool.migration_bandwidth_bytes_per_sec;
    let mut hot: Vec<(usize, Resource, f64)> = (0..st.nodes.len())
        .filter(|&h| st.counted[h])
        .filter_map(|h| st.short(h).map(|(r, ratio)| (h, r, ratio)))
        .collect();
    hot.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    hot.truncate(4);
    let usable =
        |st: &PoolState, v: usize| st.balance_candidate(v) && cost::converges(st.vms[v].dirty_rate_bytes_per_sec, bw);
    // (drop in shortfall, ssd gain, cost, a, s, b, t)
    let mut best: Option<(i64, i64, i64, usize, usize, usize, usize)> = None;
    for &(s, r, _) in &hot {
        let mut targets: Vec<usize> =
            (0..st.nodes.len()).filter(|&t| t != s && st.counted[t] && st.nodes[t].state.accepts_vms()).collect();
        targets.sort_by(|&a, &b| st.ratio(a, r).total_cmp(&st.ratio(b, r)).then(a.cmp(&b)));
        targets.truncate(SWAP_NODES);
        let mut mine: Vec<usize> = st.node_vms[s].iter().copied().filter(|&v| usable(st, v)).collect();
        mine.sort_by(|&a, &b| st.ent[b][r.index()].total_cmp(&st.ent[a][r.index()]).then(a.cmp(&b)));
        mine.truncate(SWAP_VMS);
        for t in targets {
            let mut theirs: Vec<usize> = st.node_vms[t].iter().copied().filter(|&v| usable(st, v)).collect();
            theirs.sort_by(|&a, &b| st.ent[a][r.index()].total_cmp(&st.ent[b][r.index()]).then(a.cmp(&b)));
            theirs.truncate(SWAP_VMS);
            let before = shortfall(st, s, st.node_ent[s]) + shortfall(st, t, st.node_ent[t]);
            for &a in &mine {
                for &b in &theirs {
                    let es = [0, 1].map(|k| st.node_ent[s][k] - st.ent[a][k] + st.ent[b][k]);
                    let et = [0, 1].map(|k| st.node_ent[t][k] - st.ent[b][k] + st.ent[a][k]);
                    let after = shortfall(st, s, es) + shortfall(st, t, et);
                    let newly_short = (0..2).any(|k| {
                        (es[k] > st.cap[s][k] && st.ratio(s, Resource::ALL[k]) <= 1.0)
                            || (et[k] > st.cap[t][k] && st.ratio(t, Resource::ALL[k]) <= 1.0)
                    });
                    if after >= before - 1e-9 || newly_short {
                        continue;
                    }
                    let key_drop = grid((before - after) / 1e3);
                    if best.is_some_and(|b| b.0 > key_drop) {
                        continue;
                    }
                    if !swap_allowed(st, a, s, b, t) {
                        continue;
                    }
                    let ssd = st.ssd();
                    let gain = ssd
                        - st.ssd_after(&[
                            (s, st.vm_load_on(b, s) - st.vm_load_on(a, s)),
                            (t, st.vm_load_on(a, t) - st.vm_load_on(b, t)),
                        ]);
                    if gain <= 0.0 {
                        continue;
                    }
                    let secs = secs_of(st, a) + secs_of(st, b);
                    let key = (key_drop, grid(gain / 1e3), -grid(secs / 1e9), a, s, b, t);
                    let better = best.is_none_or(|b| {
                        (key.0, key.1, key.2).cmp(&(b.0, b.1, b.2)).then(b.3.cmp(&a)) == Ordering::Greater
                    });
                    if better {
                        best = Some(key);
                    }
                }
            }
        }
    }
    let (_, gain, _, a, s, b, t) = best?;
    let score = gain as f64 / 1e9;
    Some((
        Candidate { score, vm: a, from: s, to: t, secs: secs_of(st, a) },
        Candidate { score, vm: b, from: t, to: s, secs: secs_of(st, b) },
    ))
}

/// Can `a` (on `s`) and `b` (on `t`) trade places: rules, CPU models, requests and memory, no ping-pong,
/// slots for both?
fn swap_allowed(st: &mut PoolState, a: usize, s: usize, b: usize, t: usize) -> bool {
    let manual = |v: usize| st.vms[v].automation == VmAutomation::Manual;
    let slots = (manual(a) || st.slot_free(s, t)) && (manual(b) || st.slot_free(t, s));
    let back = |v: usize, h: usize| st.since_left(v, h).is_some_and(|secs| secs < PING_PONG_SECS);
    if !slots || back(a, t) || back(b, s) {
        return false;
    }
    st.remove(a);
    st.remove(b);
    let mut ok = st.allowed(a, t, false) && st.reservation_fits(a, t);
    if ok {
        st.place(a, t);
        ok = st.allowed(b, s, false) && st.reservation_fits(b, s);
        st.remove(a);
    }
    st.place(a, s);
    st.place(b, t);
    ok
}

/// Nodes and VMs per node a chain considers: the most loaded sources (as single moves do), and as the node
/// that takes the second move and the node the first move goes to, the least loaded ones.
const CHAIN_NODES: usize = 16;
const CHAIN_VMS: usize = 8;

/// The best chain of two balancing moves where no single move qualifies: `b` leaves node `t` for node `u`,
/// then `a` leaves a hotter node `s` for `t` (where it did not fit, or did not pay, before `b` left). Together
/// the two must close gaps wider than the band plus the load they move, lower the imbalance, keep every node
/// within its capacity and repay both migrations (the cost-benefit test on the second move's gap). The
/// biggest drop wins, then the cheaper pair, then by index. Bounded: 8 sources, 8 VMs on each node, 16 nodes
/// for `t` and for `u`. Returns (the first move, the second).
fn chain_move(st: &mut PoolState) -> Option<(Candidate, Candidate)> {
    let pool = &st.snap.pool;
    let (bw, band, risk) = (
        pool.migration_bandwidth_bytes_per_sec,
        band(pool.migration_threshold),
        cost::risk_factor(pool.migration_threshold),
    );
    let usable =
        |st: &PoolState, v: usize| st.balance_candidate(v) && cost::converges(st.vms[v].dirty_rate_bytes_per_sec, bw);
    let loads: Vec<f64> = (0..st.nodes.len()).map(|h| st.load(h)).collect();
    let mut sources: Vec<usize> =
        (0..st.nodes.len()).filter(|&h| st.counted[h] && !st.node_vms[h].is_empty()).collect();
    sources.sort_by(|&a, &b| loads[b].total_cmp(&loads[a]).then(a.cmp(&b)));
    sources.truncate(FIRST_SOURCES);
    let mut cool: Vec<usize> =
        (0..st.nodes.len()).filter(|&h| st.counted[h] && st.nodes[h].state.accepts_vms()).collect();
    cool.sort_by(|&a, &b| loads[a].total_cmp(&loads[b]).then(a.cmp(&b)));
    cool.truncate(CHAIN_NODES);
    let biggest = |st: &PoolState, h: usize| -> Vec<usize> {
        let mut vs: Vec<usize> = st.node_vms[h].iter().copied().filter(|&v| usable(st, v)).collect();
        vs.sort_by(|&x, &y| st.vm_load_on(y, h).total_cmp(&st.vm_load_on(x, h)).then(x.cmp(&y)));
        vs.truncate(CHAIN_VMS);
        vs
    };
    let ent_fits = |st: &PoolState, h: usize, add: [f64; 2], less: [f64; 2]| {
        (0..2).all(|k| st.node_ent[h][k] + add[k] - less[k] <= st.cap[h][k] * (1.0 + 1e-9))
    };
    let ssd = st.ssd();
    // (gain on the grid, cost on the grid (negated), a, s, t, b, u)
    let mut best: Option<(i64, i64, usize, usize, usize, usize, usize)> = None;
    for &s in &sources {
        let mine = biggest(st, s);
        for &t in cool.iter().filter(|&&t| t != s && loads[t] < loads[s]) {
            let theirs = biggest(st, t);
            for &a in &mine {
                let (a_out, a_in) = (st.vm_load_on(a, s), st.vm_load_on(a, t));
                for &b in &theirs {
                    let b_out = st.vm_load_on(b, t);
                    // a must fit on t once b has left (entitlement; requests are checked below).
                    if !ent_fits(st, t, st.ent[a], st.ent[b]) {
                        continue;
                    }
                    // The second move closes a gap wider than the band plus what it moves, and repays both.
                    let gap = loads[s] - (loads[t] - b_out);
                    let moved_a = (a_out + a_in) / 2.0;
                    if gap - moved_a < band {
                        continue;
                    }
                    let secs = secs_of(st, a) + secs_of(st, b);
                    if cost::benefit_secs(gap, moved_a) < risk * secs {
                        continue;
                    }
                    for &u in cool.iter().filter(|&&u| u != s && u != t) {
                        let b_in = st.vm_load_on(b, u);
                        if !ent_fits(st, u, st.ent[b], [0.0; 2]) {
                            continue;
                        }
                        let gain = ssd - st.ssd_after(&[(s, -a_out), (t, a_in - b_out), (u, b_in)]);
                        let moved = moved_a + (b_out + b_in) / 2.0;
                        if gain < 2.0 * moved * band {
                            continue;
                        }
                        let key = (grid(gain / 1e3), -grid(secs / 1e9), a, s, t, b, u);
                        let better =
                            best.is_none_or(|k| (key.0, key.1).cmp(&(k.0, k.1)).then(k.2.cmp(&a)) == Ordering::Greater);
                        if better && chain_allowed(st, (a, s, t), (b, t, u)) {
                            best = Some(key);
                        }
                    }
                }
            }
        }
    }
    let (gain, _, a, s, t, b, u) = best?;
    let score = gain as f64 / 1e9;
    Some((
        Candidate { score, vm: b, from: t, to: u, secs: secs_of(st, b) },
        Candidate { score, vm: a, from: s, to: t, secs: secs_of(st, a) },
    ))
}

/// Can `b` go from `t` to `u` now, and then `a` from `s` to `t`: rules, CPU models, requests and memory,
/// entitlement within capacity, no ping-pong, slots for both?
fn chain_allowed(st: &mut PoolState, (a, s, t): (usize, usize, usize), (b, _, u): (usize, usize, usize)) -> bool {
    let manual = |v: usize| st.vms[v].automation == VmAutomation::Manual;
    let slots: Vec<(usize, usize)> =
        [(b, t, u), (a, s, t)].into_iter().filter(|&(v, _, _)| !manual(v)).map(|(_, from, to)| (from, to)).collect();
    let back = |v: usize, h: usize| st.since_left(v, h).is_some_and(|secs| secs < PING_PONG_SECS);
    if !st.slots_free_for(&slots) || back(a, t) || back(b, u) {
        return false;
    }
    let first = st.allowed(b, u, false) && st.reservation_fits(b, u) && st.entitlement_fits(b, u);
    if !first {
        return false;
    }
    st.remove(b);
    st.place(b, u);
    let ok = st.allowed(a, t, false) && st.reservation_fits(a, t) && st.entitlement_fits(a, t);
    st.remove(b);
    st.place(b, t);
    ok
}
