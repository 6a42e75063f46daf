//! Load balancing: greedy best-move hill-climbing on the pool imbalance.
//!
//! Each step looks at the most loaded nodes as sources and the least loaded as targets (widening the
//! sources when nothing is found), scores every allowed single-VM move by how much it lowers the sum of
//! squared load deviations (an O(1) update of the running sums), keeps those that pass the minimum
//! goodness and the cost-benefit check, and applies the best. It stops when the imbalance is within the
//! target and no two nodes are further apart than the pairwise gap, when the per-pass cap is reached, or
//! when no move pays.

use super::cost;
use super::model::VmAutomation;
use super::plan::Reason;
use super::state::PoolState;

/// Targets considered per step: the least loaded nodes.
const TARGETS: usize = 64;
/// Sources considered per step before widening.
const FIRST_SOURCES: usize = 8;
/// A move must close at least this much of the load gap (combined scale) beyond what it carries: smaller
/// gaps are noise.
const MIN_GAP: f64 = 0.02;
/// Score taken off a move per Preferred rule it breaks (and given back per one it mends).
const SOFT_PENALTY: f64 = 0.05;

/// Target imbalance for threshold `t` on `n` nodes (design note §2: `0.1 * (5 - t) / sqrt(n)`).
pub fn target_imbalance(threshold: u8, n: usize) -> f64 {
    if threshold <= 1 {
        return f64::INFINITY;
    }
    0.1 * (5.0 - threshold as f64) / (n.max(1) as f64).sqrt()
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

/// A balancing move as chosen.
pub struct Chosen {
    pub vm: usize,
    pub from: usize,
    pub to: usize,
    pub goodness: f64,
    pub load_from: f64,
    pub load_to: f64,
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
        if imbalance <= target && st.load_spread() <= gap {
            break format!(
                "within target: imbalance {imbalance:.3} <= {target:.3} and spread {:.2} <= {gap:.2}",
                st.load_spread()
            );
        }
        if chosen.len() >= cap {
            break format!(
                "stopped at maxMigrationsPerPass ({cap}) with imbalance {imbalance:.3} (target {target:.3})"
            );
        }
        let Some(c) = best_move(st) else {
            break format!("no further move pays for itself (imbalance {imbalance:.3}, target {target:.3})");
        };
        let ssd_before = st.ssd();
        let imbalance_before = st.imbalance();
        let (load_from, load_to) = (st.load(c.from), st.load(c.to));
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
        });
    };
    (chosen, stop)
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
            if t == s || !st.allowed(v, t, false) || !st.reservation_fits(v, t) || !st.entitlement_fits(v, t) {
                continue;
            }
            if !manual && !st.slot_free(s, t) {
                continue;
            }
            let inn = st.vm_load_on(v, t);
            let gain = ssd - st.ssd_after(&[(s, -out), (t, inn)]);
            let moved = (out + inn) / 2.0;
            if gain < 2.0 * moved * MIN_GAP {
                continue;
            }
            // Relieving a node above its capacity always pays; otherwise the move must earn its migration.
            let relieves_overload = loads[s] > 1.0;
            if !relieves_overload && cost::benefit_secs(loads[s] - loads[t], moved) < risk * migration {
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
