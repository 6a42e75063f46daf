//! The DRS engine: a pure function from a pool [`Snapshot`] to a [`Plan`].
//!
//! No I/O, no Kubernetes types, no clocks: the operator and the simulator build snapshots and carry out
//! plans. A pass runs in the order of the design note (see docs/algorithm.md):
//!
//! 1. [`validate`]: refuse a malformed snapshot, naming the field;
//! 2. [`entitlement`]: each VM's share of the pool (the divvy), inside [`state::PoolState::new`];
//! 3. [`mandatory`]: evacuate nodes in maintenance, fix broken hard rules and CPU models, fix
//!    reservations that no longer fit, place new VMs (all through the [`assign`] solver);
//! 4. [`balance`]: greedy best moves until the imbalance is within the threshold's target;
//! 5. assemble the plan: moves with reasons and concurrency slots, what is blocked and why, loads,
//!    the CPU baseline ([`cpu`]).
//!
//! Every step iterates in name order and breaks ties by index, so the same snapshot gives the same plan.

// The steps are internal: [`plan`] is the one entry point. What callers need besides it is re-exported
// below (the model, the plan, the divvy the simulator measures with, the CPU model catalogue).
mod assign;
mod balance;
pub mod build;
mod cost;
pub mod cpu;
mod entitlement;
mod gate;
mod mandatory;
mod model;
mod plan;
mod state;
mod validate;

pub use balance::{HEADROOM, PING_PONG_SECS, band, target_imbalance};
pub use cost::migration_secs;
pub use entitlement::{Claim, deliver, divvy};
pub use gate::{Gate, Verdict};
pub use model::*;
pub use plan::*;

/// The imbalance of a pool as it stands (the standard deviation of the nodes' normalized entitlement),
/// the number [`plan`] starts from: lets other policies be scored on the engine's own yardstick.
pub fn imbalance(snapshot: &Snapshot) -> f64 {
    PoolState::new(snapshot).imbalance()
}

/// The pool as the engine sees it before planning, in its own order (nodes and VMs by name): where each VM
/// runs, what it is entitled to, which nodes count in the imbalance and how CPU and memory are weighted.
/// Lets an outside solver (the comparison's bridge) compute the engine's imbalance exactly.
#[derive(Debug, Clone)]
pub struct PoolView<'a> {
    pub nodes: Vec<&'a Node>,
    pub vms: Vec<&'a Vm>,
    /// Index into `nodes` of the node each VM runs on (None: not placed yet).
    pub node_of: Vec<Option<usize>>,
    /// Each VM's entitlement, CPU millicores and memory bytes.
    pub entitlement: Vec<[f64; 2]>,
    /// Whether a VM is migrating now.
    pub in_flight: Vec<bool>,
    /// Whether a node counts in the imbalance.
    pub counted: Vec<bool>,
    /// Contention weights of CPU and memory in the combined load.
    pub weights: [f64; 2],
}

/// See [`PoolView`].
pub fn view(snapshot: &Snapshot) -> PoolView<'_> {
    let st = PoolState::new(snapshot);
    PoolView {
        nodes: st.nodes.clone(),
        vms: st.vms.clone(),
        node_of: st.origin.clone(),
        entitlement: st.ent.clone(),
        in_flight: st.in_flight.clone(),
        counted: st.counted.clone(),
        weights: st.weights,
    }
}

use mandatory::Findings;
use state::PoolState;

/// Plans one pass over a pool.
pub fn plan(snapshot: &Snapshot) -> Result<Plan, InvalidSnapshot> {
    validate::validate(snapshot)?;
    let mut st = PoolState::new(snapshot);
    let imbalance_before = st.imbalance();
    let mut found = Findings::default();
    mandatory::evacuate(&mut st, &mut found);
    mandatory::fix_rules(&mut st, &mut found);
    mandatory::fix_reservations(&mut st, &mut found);
    mandatory::place_new(&mut st, &mut found);

    let mut moves = mandatory_moves(&mut st);
    let (chosen, balance_summary) = balance::balance(&mut st);
    let bw = snapshot.pool.migration_bandwidth_bytes_per_sec;
    for c in chosen {
        let vm = st.vms[c.vm];
        moves.push(Move {
            vm: vm.name.clone(),
            from: st.nodes[c.from].name.clone(),
            to: st.nodes[c.to].name.clone(),
            reason: Reason::Balance,
            goodness: c.goodness,
            migration_secs: cost::migration_secs(vm.memory_size_bytes, vm.dirty_rate_bytes_per_sec, bw),
            recommend_only: vm.automation == VmAutomation::Manual,
            deferred: false,
            why: match c.relieves {
                Some((r, ratio)) => format!(
                    "relieve: {} is short, its VMs are entitled to {:.0}% of its {}; {} at {:.0}% load takes one \
                     (relief down to {:.0}%); lowers the imbalance by {:.4}",
                    st.nodes[c.from].name,
                    ratio * 100.0,
                    if r == 0 { "CPU" } else { "memory" },
                    st.nodes[c.to].name,
                    c.load_to * 100.0,
                    balance::HEADROOM * 100.0,
                    c.goodness
                ),
                None => format!(
                    "balance: {} at {:.0}% load, {} at {:.0}%; lowers the imbalance by {:.4}",
                    st.nodes[c.from].name,
                    c.load_from * 100.0,
                    st.nodes[c.to].name,
                    c.load_to * 100.0,
                    c.goodness
                ),
            },
        });
    }

    let loads = (0..st.nodes.len())
        .map(|h| NodeLoad {
            node: st.nodes[h].name.clone(),
            cpu: st.ratio(h, 0),
            memory: st.ratio(h, 1),
            combined: st.load(h),
            vms: st.node_vms[h].len(),
            counted: st.counted[h],
        })
        .collect();
    Ok(Plan {
        placements: found.placements,
        moves,
        blocked: found.blocked,
        rule_notes: found.notes,
        imbalance_before,
        imbalance_after: st.imbalance(),
        target_imbalance: balance::target_imbalance(snapshot.pool.migration_threshold, st.n_counted()),
        load_spread_after: st.load_spread(),
        loads,
        baseline: cpu::baseline_report(&snapshot.pool.cpu_baseline, &snapshot.nodes, &snapshot.vms),
        weights: st.weights,
        balance_summary,
    })
}

/// Mandatory moves in order (maintenance, rule, reservation; then VM name), taking concurrency slots;
/// a move without a slot is deferred.
fn mandatory_moves(st: &mut PoolState) -> Vec<Move> {
    let bw = st.snap.pool.migration_bandwidth_bytes_per_sec;
    let secs = |v: usize| cost::migration_secs(st.vms[v].memory_size_bytes, st.vms[v].dirty_rate_bytes_per_sec, bw);
    let mut order: Vec<(Reason, f64, usize)> = (0..st.vms.len())
        .filter_map(|v| match (st.origin[v], st.pos[v], st.reason[v]) {
            (Some(o), Some(p), Some(r)) if o != p => Some((r, secs(v), v)),
            _ => None,
        })
        .collect();
    // Within a reason, the quickest migrations take the slots first: the node empties sooner.
    order.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    order
        .into_iter()
        .map(|(reason, _, v)| {
            let (from, to) = (st.origin[v].unwrap_or_default(), st.pos[v].unwrap_or_default());
            let vm = st.vms[v];
            let recommend_only = vm.automation == VmAutomation::Manual;
            let deferred = !recommend_only && !st.take_slot(from, to);
            Move {
                vm: vm.name.clone(),
                from: st.nodes[from].name.clone(),
                to: st.nodes[to].name.clone(),
                reason,
                goodness: 0.0,
                migration_secs: cost::migration_secs(vm.memory_size_bytes, vm.dirty_rate_bytes_per_sec, bw),
                recommend_only,
                deferred,
                why: mandatory_why(st, v, from, reason),
            }
        })
        .collect()
}

fn mandatory_why(st: &PoolState, v: usize, from: usize, reason: Reason) -> String {
    let node = &st.nodes[from].name;
    match reason {
        Reason::Maintenance => format!("node {node} is in maintenance"),
        Reason::Reservation => format!("reservations on node {node} exceed its capacity"),
        Reason::Rule if !st.vms[v].cpu_requirement.allows(st.nodes[from]) => {
            format!(
                "node {node} cannot run its CPU model {}",
                cpu::describe(&st.vms[v].cpu_requirement).unwrap_or_default()
            )
        }
        Reason::Rule => match st.vm_rules[v].iter().find(|&&r| st.rules[r].is_hard() && !st.rule_allows(r, v, from)) {
            Some(&r) => format!("required rule {} is broken on node {node}", st.rules[r].rule.name),
            None => format!("a required rule is broken on node {node}"),
        },
        Reason::Placement => format!("makes room on node {node} for a new VM whose reservation fits nowhere else"),
        Reason::Balance => String::new(),
    }
}
