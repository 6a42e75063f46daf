//! Finds nodes for a set of VMs that must go somewhere: evacuees of a node in maintenance, VMs breaking a
//! rule, VMs waiting for placement.
//!
//! First a greedy pass (hardest VM first, each to the node that leaves the pool best balanced). When that
//! leaves a VM without a node, a bounded depth-first search tries other combinations, so that a tight case
//! with a solution is solved (exhaustive on small pools). Preferred rules are treated as Required first and
//! relaxed only when that leaves a VM without a node; the relaxation is reported.

use super::plan::{BlockedReason, Reason};
use super::state::PoolState;

/// Depth-first search steps before giving up on a combination search.
const SEARCH_BUDGET: usize = 200_000;
/// Score added per Preferred rule a placement breaks (in units of the sum of squared load deviations).
const SOFT_PENALTY: f64 = 1.0;
/// Score added per unit of entitlement above a node's capacity.
const OVERFLOW_PENALTY: f64 = 10.0;

/// What became of one VM.
pub struct Outcome {
    pub vm: usize,
    pub result: Result<usize, BlockedReason>,
    /// A Preferred rule had to be relaxed to find its node.
    pub relaxed: bool,
}

/// Unplaces `vms` and finds each a node; placed VMs are left placed in the state, the others unplaced.
/// The `exclude` node (one being relieved) is never a target.
pub fn assign(st: &mut PoolState, vms: &[usize], reason: Reason, exclude: Option<usize>) -> Vec<Outcome> {
    assign_within(st, vms, reason, exclude, SEARCH_BUDGET)
}

/// [`assign`] with a bound on the combination search (the make-room search tries many sets).
pub fn assign_within(
    st: &mut PoolState,
    vms: &[usize],
    reason: Reason,
    exclude: Option<usize>,
    budget: usize,
) -> Vec<Outcome> {
    let ctx = Ctx { exclude };
    for &v in vms {
        st.remove(v);
    }
    let mut order: Vec<(usize, usize)> = vms.iter().map(|&v| (eligible(st, v, true), v)).collect();
    // Fewest choices first, then the biggest reservation, then by name: the classic first-fit-decreasing
    // order, which the search also follows.
    order.sort_by(|a, b| {
        let ra = st.vms[a.1].reservation();
        let rb = st.vms[b.1].reservation();
        a.0.cmp(&b.0).then(rb.cmp(&ra)).then(a.1.cmp(&b.1))
    });
    let order: Vec<usize> = order.into_iter().map(|(_, v)| v).collect();

    let mut outcomes = Vec::new();
    for strict in [true, false] {
        if let Some(found) = greedy(st, &ctx, &order, strict).or_else(|| search(st, &ctx, &order, strict, budget)) {
            for (&v, &h) in order.iter().zip(&found) {
                st.place(v, h);
                st.reason[v].get_or_insert(reason);
            }
            for (&v, &h) in order.iter().zip(&found) {
                outcomes.push(Outcome { vm: v, result: Ok(h), relaxed: st.soft_breaks(v, h) > 0 });
            }
            return outcomes;
        }
    }
    // No complete assignment. Put every VM back where it runs, then move each in turn where it can go:
    // a VM that finds no node keeps its place, which nobody took while it held it.
    for &v in &order {
        if let Some(h) = st.origin[v] {
            st.place(v, h);
        }
    }
    for &v in &order {
        st.remove(v);
        match best_node(st, &ctx, v, false) {
            Some(h) => {
                st.place(v, h);
                st.reason[v].get_or_insert(reason);
                outcomes.push(Outcome { vm: v, result: Ok(h), relaxed: st.soft_breaks(v, h) > 0 });
            }
            None => {
                outcomes.push(Outcome { vm: v, result: Err(diagnose(st, v, exclude)), relaxed: false });
                if let Some(h) = st.origin[v] {
                    st.place(v, h);
                }
            }
        }
    }
    outcomes
}

/// Nodes where the VM could run ignoring capacity.
fn eligible(st: &PoolState, v: usize, strict: bool) -> usize {
    (0..st.nodes.len()).filter(|&h| st.allowed(v, h, strict)).count()
}

/// Score of putting `v` on `h` (lower is better): balance after, broken preferences, overload.
fn score(st: &PoolState, v: usize, h: usize) -> f64 {
    let d = st.vm_load_on(v, h);
    st.ssd_after(&[(h, d)]) + SOFT_PENALTY * st.soft_breaks(v, h) as f64 + OVERFLOW_PENALTY * st.overflow_with(v, h)
}

/// Constraints of one assignment beyond the state's.
pub struct Ctx {
    pub exclude: Option<usize>,
}

fn feasible(st: &PoolState, ctx: &Ctx, v: usize, h: usize, strict: bool) -> bool {
    ctx.exclude != Some(h) && st.reservation_fits(v, h) && st.allowed(v, h, strict)
}

pub fn best_node(st: &PoolState, ctx: &Ctx, v: usize, strict: bool) -> Option<usize> {
    // Ties (VMs with no demand yet add no load) go to the node with the fewest VMs: no herding.
    let mut best: Option<(f64, usize, usize)> = None;
    for h in 0..st.nodes.len() {
        if feasible(st, ctx, v, h, strict) {
            let s = score(st, v, h);
            let n = st.node_vms[h].len();
            if best.is_none_or(|(b, bn, _)| s < b - 1e-12 || (s <= b + 1e-12 && n < bn)) {
                best = Some((s, n, h));
            }
        }
    }
    best.map(|(_, _, h)| h)
}

/// Places in order, each VM on its best node; `None` (state restored) if one has no node.
fn greedy(st: &mut PoolState, ctx: &Ctx, order: &[usize], strict: bool) -> Option<Vec<usize>> {
    let mut chosen = Vec::with_capacity(order.len());
    for &v in order {
        match best_node(st, ctx, v, strict) {
            Some(h) => {
                st.place(v, h);
                chosen.push(h);
            }
            None => break,
        }
    }
    for &v in &order[..chosen.len()] {
        st.remove(v);
    }
    (chosen.len() == order.len()).then_some(chosen)
}

/// Bounded depth-first search over nodes in score order; the state is restored before returning.
fn search(st: &mut PoolState, ctx: &Ctx, order: &[usize], strict: bool, budget: usize) -> Option<Vec<usize>> {
    let mut budget = budget;
    let mut chosen = Vec::with_capacity(order.len());
    let found = dfs(st, ctx, order, strict, &mut chosen, &mut budget);
    for &v in &order[..chosen.len()] {
        st.remove(v);
    }
    found.then_some(chosen)
}

fn dfs(
    st: &mut PoolState,
    ctx: &Ctx,
    order: &[usize],
    strict: bool,
    chosen: &mut Vec<usize>,
    budget: &mut usize,
) -> bool {
    let depth = chosen.len();
    if depth == order.len() {
        return true;
    }
    let v = order[depth];
    let mut candidates: Vec<(f64, usize)> =
        (0..st.nodes.len()).filter(|&h| feasible(st, ctx, v, h, strict)).map(|h| (score(st, v, h), h)).collect();
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (_, h) in candidates {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        st.place(v, h);
        chosen.push(h);
        if dfs(st, ctx, order, strict, chosen, budget) {
            return true;
        }
        chosen.pop();
        st.remove(v);
    }
    false
}

/// Why a VM has no node: the first filter, in order, that leaves nothing. The `exclude` node (the one it
/// must leave) does not count.
pub fn diagnose(st: &PoolState, v: usize, exclude: Option<usize>) -> BlockedReason {
    let ready: Vec<usize> =
        (0..st.nodes.len()).filter(|&h| st.nodes[h].state.accepts_vms() && Some(h) != exclude).collect();
    if ready.is_empty() {
        return BlockedReason::NoEligibleNode;
    }
    let vm = st.vms[v];
    let cpu_ok: Vec<usize> = ready.iter().copied().filter(|&h| vm.cpu_requirement.allows(st.nodes[h])).collect();
    if cpu_ok.is_empty() {
        let model = super::cpu::describe(&vm.cpu_requirement).unwrap_or_default();
        return BlockedReason::CpuModel { model };
    }
    if !cpu_ok.iter().any(|&h| st.rule_conflict(v, h, false).is_none()) {
        // Name the rule that rules out the most nodes.
        let worst = st.vm_rules[v]
            .iter()
            .filter(|&&r| st.rules[r].is_hard())
            .max_by_key(|&&r| (cpu_ok.iter().filter(|&&h| !st.rule_allows(r, v, h)).count(), std::cmp::Reverse(r)));
        if let Some(&r) = worst {
            return BlockedReason::Rule { rule: st.rules[r].rule.name.clone() };
        }
    }
    BlockedReason::NoCapacity
}
