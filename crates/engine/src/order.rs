//! Orders a plan's moves so that a real cluster can carry them out.
//!
//! The planner decides where every VM should end up; a cluster gets there one live migration at a time, and
//! a migration holds the VM on both nodes until it ends (the target pod is admitted by the kubelet only when
//! its requests fit what is left on the node). This step turns the set of moves into an order: each move
//! names the moves it waits for (`after`), and whatever order respecting that the moves are started in, even
//! all at once, no node ever holds more requests than its allocatable nor more memory than its capacity.
//!
//! The accounting is worst case, which makes the guarantee hold for any interleaving: when a move into node
//! `t` is added, `t` is charged with every VM that is there now or was ever sent there by an earlier move, and
//! credited only with the departures this move waits for (directly or through the moves they wait for). A
//! later move into `t` that waits for nothing is charged with this one too. So the load of `t` at any instant
//! is at most the charge of the last-listed move into `t` that has started, which fitted.
//!
//! Moves are taken in the planner's order, each as soon as it fits. When none of the moves left fits, they wait
//! for one another in a cycle (a swap, a rotation through full nodes): one VM of the cycle is staged on a node
//! with room and goes on from there once the cycle has turned; when no node has room, the cycle is reported.
//! Balancing moves are never staged: a balancing move that cannot be ordered is dropped (the next pass plans
//! again).

use super::model::RuleKind;
use super::plan::Reason;
use super::state::PoolState;
use std::collections::BTreeSet;

/// A move the planner wants: VM `vm` from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub vm: usize,
    pub from: usize,
    pub to: usize,
    pub reason: Reason,
}

/// One move of the ordered plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub vm: usize,
    pub from: usize,
    pub to: usize,
    pub reason: Reason,
    /// Steps (indices into the ordered list) that must finish before this one starts.
    pub after: Vec<usize>,
    /// A hop to a node with room, on the way to `final_to`, that lets a cycle turn.
    pub staged: bool,
    /// Where the VM ends up.
    pub final_to: usize,
}

/// The ordered plan and what could not be ordered.
#[derive(Debug, Default)]
pub struct Ordered {
    pub steps: Vec<Step>,
    /// Cycles through full nodes with no node to stage on: the moves of each cycle, in order.
    pub cycles: Vec<Vec<Want>>,
    /// Mandatory moves whose target never gets room (what they wait for is blocked), with the VMs they wait for.
    pub stuck: Vec<(Want, Vec<usize>)>,
    /// Balancing moves given up.
    pub dropped: Vec<Want>,
    /// New VMs the plan places, each with the steps its node must see finished before the VM is bound there
    /// (`Ok`: departures that make room for it), or the VMs that stay on the node and leave it no room
    /// (`Err`: a move that would have made room could not be ordered).
    pub placements: Vec<(usize, PlacementDeps)>,
}

/// The steps a new VM's placement waits for, or the VMs that stay on its node and leave it no room.
pub type PlacementDeps = Result<Vec<usize>, Vec<usize>>;

/// A VM counted on a node: there now, or sent there by a step; `left_by` is the step that takes it away.
#[derive(Debug, Clone, Copy)]
struct Occupant {
    vm: usize,
    left_by: Option<usize>,
}

struct Sequencer<'s, 'a> {
    st: &'s PoolState<'a>,
    occ: Vec<Vec<Occupant>>,
    steps: Vec<Step>,
    /// Every step's transitive predecessors.
    ancestors: Vec<BTreeSet<usize>>,
}

/// A pending move: what is wanted, and the VM's own earlier hop, if it was staged.
#[derive(Debug, Clone, Copy)]
struct Pending {
    want: Want,
    prev: Option<usize>,
    final_to: usize,
}

/// Requests (CPU, memory) and memory held of a VM.
fn weight(st: &PoolState, v: usize) -> [u64; 3] {
    [st.vms[v].cpu.reservation, st.vms[v].memory.reservation, st.mem_use[v]]
}

impl<'s, 'a> Sequencer<'s, 'a> {
    fn new(st: &'s PoolState<'a>) -> Self {
        let mut occ = vec![Vec::new(); st.nodes.len()];
        for v in 0..st.vms.len() {
            if let Some(h) = st.origin[v] {
                occ[h].push(Occupant { vm: v, left_by: None });
            }
        }
        for &(v, s) in &st.held_on_source {
            occ[s].push(Occupant { vm: v, left_by: None });
        }
        // New VMs the plan places start now, on their node.
        for v in 0..st.vms.len() {
            if let (None, Some(h)) = (st.origin[v], st.pos[v]) {
                occ[h].push(Occupant { vm: v, left_by: None });
            }
        }
        Sequencer { st, occ, steps: Vec::new(), ancestors: Vec::new() }
    }

    fn anti_affine(&self, v: usize, u: usize) -> bool {
        let st = self.st;
        v != u
            && st.vm_rules[v].iter().any(|&r| {
                st.rules[r].is_hard()
                    && matches!(st.rules[r].rule.kind, RuleKind::VMAntiAffinity { .. })
                    && st.vm_rules[u].contains(&r)
            })
    }

    /// The steps `v` must wait for to go from `from` to `to` now, or `None` when no choice of steps already
    /// ordered makes room (or clears an anti-affine VM).
    fn deps_for(&self, v: usize, to: usize, prev: Option<usize>) -> Option<Vec<usize>> {
        let st = self.st;
        let mut anc: BTreeSet<usize> = BTreeSet::new();
        let mut deps: Vec<usize> = Vec::new();
        let add = |s: usize, deps: &mut Vec<usize>, anc: &mut BTreeSet<usize>| {
            deps.push(s);
            anc.insert(s);
            anc.extend(self.ancestors[s].iter().copied());
        };
        if let Some(p) = prev {
            add(p, &mut deps, &mut anc);
        }
        // A VM never waits for itself (a new VM is counted on its node from the start).
        let gone = |o: &Occupant, anc: &BTreeSet<usize>| o.vm == v || o.left_by.is_some_and(|s| anc.contains(&s));
        // An anti-affine VM on the target must have left.
        for o in &self.occ[to] {
            if self.anti_affine(v, o.vm) && !gone(o, &anc) {
                add(o.left_by?, &mut deps, &mut anc);
            }
        }
        let cap = st.nodes[to].capacity;
        let cap = [cap.cpu_millis, cap.memory_bytes, cap.memory_bytes];
        let w = weight(st, v);
        loop {
            let mut used = w;
            for o in self.occ[to].iter().filter(|o| !gone(o, &anc)) {
                let ow = weight(st, o.vm);
                for k in 0..3 {
                    used[k] += ow[k];
                }
            }
            let over: Vec<u64> = (0..3).map(|k| used[k].saturating_sub(cap[k])).collect();
            if over.iter().all(|&o| o == 0) {
                break;
            }
            // Wait for the departure that frees most of what is over (as a fraction of capacity), then the
            // one ordered first.
            let freed = |o: &Occupant| {
                let ow = weight(st, o.vm);
                (0..3).filter(|&k| over[k] > 0).map(|k| ow[k].min(over[k]) as f64 / cap[k].max(1) as f64).sum::<f64>()
            };
            let best = self.occ[to]
                .iter()
                .filter(|o| o.left_by.is_some() && !gone(o, &anc))
                .map(|o| (freed(o), o.left_by.unwrap_or_default()))
                .filter(|&(f, _)| f > 0.0)
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))?;
            add(best.1, &mut deps, &mut anc);
        }
        // Keep only the direct ones: a step another dependency already waits for is implied.
        let direct: Vec<usize> =
            deps.iter().copied().filter(|&d| !deps.iter().any(|&e| e != d && self.ancestors[e].contains(&d))).collect();
        let mut direct: Vec<usize> = direct.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        direct.sort_unstable();
        Some(direct)
    }

    fn emit(&mut self, p: &Pending, to: usize, after: Vec<usize>) -> usize {
        let idx = self.steps.len();
        let mut anc = BTreeSet::new();
        for &d in &after {
            anc.insert(d);
            anc.extend(self.ancestors[d].iter().copied());
        }
        let from = p.want.from;
        if let Some(o) = self.occ[from].iter_mut().find(|o| o.vm == p.want.vm && o.left_by.is_none()) {
            o.left_by = Some(idx);
        }
        self.occ[to].push(Occupant { vm: p.want.vm, left_by: None });
        self.steps.push(Step {
            vm: p.want.vm,
            from,
            to,
            reason: p.want.reason,
            after,
            staged: to != p.final_to,
            final_to: p.final_to,
        });
        self.ancestors.push(anc);
        idx
    }

    /// May `v`, on its way from `from`, wait on `z`: the node takes VMs, runs its CPU model, and no hard
    /// VM-node rule that holds now breaks there (anti-affinity is checked with the room).
    fn stage_allowed(&self, v: usize, from: usize, z: usize) -> bool {
        let st = self.st;
        st.nodes[z].state.accepts_vms()
            && st.vms[v].cpu_requirement.allows(st.nodes[z])
            && st.vm_rules[v].iter().all(|&r| {
                let rule = &st.rules[r];
                !rule.is_hard()
                    || !matches!(rule.rule.kind, RuleKind::VMNodeAffinity { .. })
                    || rule.node_ok[z]
                    || !rule.node_ok[from]
            })
    }

    /// The pending moves waiting for one another in a cycle, if any: `i` waits for `j` when `j`'s VM is
    /// counted on `i`'s target and has not left.
    fn find_cycle(&self, pending: &[Pending]) -> Option<Vec<usize>> {
        let waits_for = |i: usize| -> Vec<usize> {
            let to = pending[i].want.to;
            (0..pending.len())
                .filter(|&j| {
                    j != i
                        && self.occ[to].iter().any(|o| o.vm == pending[j].want.vm && o.left_by.is_none())
                        && pending[j].want.from == to
                })
                .collect()
        };
        let edges: Vec<Vec<usize>> = (0..pending.len()).map(waits_for).collect();
        // Depth-first search with colours; the first back edge closes a cycle.
        let mut colour = vec![0u8; pending.len()];
        let mut path: Vec<usize> = Vec::new();
        fn dfs(i: usize, edges: &[Vec<usize>], colour: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
            colour[i] = 1;
            path.push(i);
            for &j in &edges[i] {
                if colour[j] == 1 {
                    let start = path.iter().position(|&p| p == j).unwrap_or(0);
                    return Some(path[start..].to_vec());
                }
                if colour[j] == 0
                    && let Some(c) = dfs(j, edges, colour, path)
                {
                    return Some(c);
                }
            }
            path.pop();
            colour[i] = 2;
            None
        }
        (0..pending.len()).find_map(|i| if colour[i] == 0 { dfs(i, &edges, &mut colour, &mut path) } else { None })
    }

    /// Stages one VM of the cycle on a node with room: the smallest VM first, onto the node with the most
    /// memory left; a VM already staged is not staged again. Returns the index (in `pending`) of the staged move and the hop.
    fn stage(&self, pending: &[Pending], cycle: &[usize]) -> Option<(usize, usize, Vec<usize>)> {
        let st = self.st;
        let mut members = cycle.to_vec();
        members.sort_by(|&a, &b| {
            let (va, vb) = (pending[a].want.vm, pending[b].want.vm);
            st.vms[va].memory_size_bytes.cmp(&st.vms[vb].memory_size_bytes).then(va.cmp(&vb))
        });
        for i in members {
            let p = pending[i];
            // A VM is staged at most once: the search always ends.
            if p.prev.is_some() {
                continue;
            }
            let v = p.want.vm;
            let mut nodes: Vec<usize> = (0..st.nodes.len())
                .filter(|&z| z != p.want.from && z != p.want.to && self.stage_allowed(v, p.want.from, z))
                .collect();
            let free = |z: usize| st.nodes[z].capacity.memory_bytes.saturating_sub(st.node_mem[z]);
            nodes.sort_by_key(|&z| (std::cmp::Reverse(free(z)), z));
            for z in nodes {
                if let Some(deps) = self.deps_for(v, z, p.prev) {
                    return Some((i, z, deps));
                }
            }
        }
        None
    }
}

/// Mandatory moves in order of priority: by reason (maintenance, rule, reservation, placement), then quickest
/// migration first (a node in maintenance empties sooner), then VM name.
pub fn mandatory_wants(st: &PoolState) -> Vec<Want> {
    let bw = st.snap.pool.migration_bandwidth_bytes_per_sec;
    let secs =
        |v: usize| super::cost::migration_secs(st.vms[v].memory_size_bytes, st.vms[v].dirty_rate_bytes_per_sec, bw);
    let mut order: Vec<(Reason, f64, usize, usize, usize)> = (0..st.vms.len())
        .filter_map(|v| match (st.origin[v], st.pos[v], st.reason[v]) {
            (Some(o), Some(p), Some(r)) if o != p => Some((r, secs(v), v, o, p)),
            _ => None,
        })
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    order.into_iter().map(|(reason, _, vm, from, to)| Want { vm, from, to, reason }).collect()
}

/// Orderings tried after the first one leaves mandatory moves in a cycle or stuck.
const REORDER_TRIES: usize = 4;

/// Orders `wants` (in the planner's order of priority).
///
/// Taking each move as soon as it fits is greedy: a move that fits early may take the room another move needs
/// to make room in turn (an evacuee fills the node a VM moved out of the way must go to first, and the two
/// moves into the node that VM leaves wait for it forever). When mandatory moves are left in a cycle or
/// stuck (or a balancing move took the room one needed), the ordering is tried again with every mandatory move
/// before any balancing move, and the moves that failed last time in front, a bounded number of times; the
/// first ordering that carries out every mandatory move is kept, and if none does, the first one.
pub fn sequence(st: &PoolState, wants: &[Want]) -> Ordered {
    let first = sequence_once(st, wants, false);
    let failed =
        |o: &Ordered| -> Vec<Want> { o.cycles.iter().flatten().copied().chain(o.stuck.iter().map(|s| s.0)).collect() };
    let mut last = failed(&first);
    if last.is_empty() {
        return first;
    }
    // Mandatory moves first (the same orderings as the make-room search tried on them alone), each time
    // with the moves that failed last in front. Without balancing moves, the first of these is `first`.
    let has_balance = wants.iter().any(|w| w.reason == Reason::Balance);
    let mut order: Vec<Want> = wants.to_vec();
    let mut front: Vec<Want> = Vec::new();
    for k in 0..=REORDER_TRIES {
        if k > 0 || has_balance {
            let o = sequence_once(st, &order, true);
            last = failed(&o);
            if last.is_empty() {
                return o;
            }
        }
        // The moves that failed last, then those promoted before, then the rest in the planner's order.
        let mut promoted: Vec<Want> = last.clone();
        promoted.extend(front.iter().copied().filter(|w| !last.contains(w)));
        if promoted == front {
            break;
        }
        front = promoted;
        order = front.iter().copied().chain(wants.iter().copied().filter(|w| !front.contains(w))).collect();
    }
    first
}

/// One ordering of `wants`, taken in the order given. With `mandatory_first`, balancing moves are taken only
/// once every mandatory move is ordered (or reported), so that none of them takes room a mandatory move needs:
/// the mandatory moves are then ordered exactly as they would be alone.
fn sequence_once(st: &PoolState, wants: &[Want], mandatory_first: bool) -> Ordered {
    let mut sq = Sequencer::new(st);
    let mut pending: Vec<Pending> = wants.iter().map(|&w| Pending { want: w, prev: None, final_to: w.to }).collect();
    let mut later: Vec<Pending> = Vec::new();
    if mandatory_first {
        (later, pending) = pending.into_iter().partition(|p| p.want.reason == Reason::Balance);
    }
    let mut out = Ordered::default();
    while !pending.is_empty() || !later.is_empty() {
        if pending.is_empty() {
            pending = std::mem::take(&mut later);
        }
        // Take every move that fits, in order, until none does.
        let mut progress = true;
        while progress {
            progress = false;
            let mut i = 0;
            while i < pending.len() {
                let p = pending[i];
                if let Some(deps) = sq.deps_for(p.want.vm, p.want.to, p.prev) {
                    sq.emit(&p, p.want.to, deps);
                    pending.remove(i);
                    progress = true;
                } else {
                    i += 1;
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        // Optional moves are never staged: drop the balancing moves that wait.
        if pending.iter().any(|p| p.want.reason == Reason::Balance) {
            out.dropped.extend(pending.iter().filter(|p| p.want.reason == Reason::Balance).map(|p| p.want));
            pending.retain(|p| p.want.reason != Reason::Balance);
            continue;
        }
        match sq.find_cycle(&pending) {
            Some(cycle) => {
                if let Some((i, z, deps)) = sq.stage(&pending, &cycle) {
                    let p = pending[i];
                    let idx = sq.emit(&p, z, deps);
                    pending[i] = Pending { want: Want { from: z, ..p.want }, prev: Some(idx), final_to: p.final_to };
                } else {
                    let mut members = cycle.clone();
                    out.cycles.push(cycle.iter().map(|&i| pending[i].want).collect());
                    members.sort_unstable();
                    for i in members.into_iter().rev() {
                        pending.remove(i);
                    }
                }
            }
            None => {
                // Nothing can turn: the first move waits for VMs that stay (blocked, or not moved).
                let p = pending.remove(0);
                let stays: Vec<usize> =
                    sq.occ[p.want.to].iter().filter(|o| o.left_by.is_none()).map(|o| o.vm).collect();
                out.stuck.push((p.want, stays));
            }
        }
    }
    // New VMs are bound only once their node has room: after the departures they need (a VM moved out of the
    // way for them). Every move into their node was charged with them from the start.
    for v in 0..st.vms.len() {
        if let (None, Some(h)) = (st.origin[v], st.pos[v]) {
            let deps = sq
                .deps_for(v, h, None)
                .ok_or_else(|| sq.occ[h].iter().filter(|o| o.left_by.is_none() && o.vm != v).map(|o| o.vm).collect());
            out.placements.push((v, deps));
        }
    }
    out.steps = sq.steps;
    out
}

/// Can the mandatory moves planned so far be carried out in some order (staging allowed)?
pub fn orderable(st: &PoolState) -> bool {
    let o = sequence(st, &mandatory_wants(st));
    o.cycles.is_empty() && o.stuck.is_empty()
}
