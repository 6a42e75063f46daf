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
mod order;
mod plan;
mod state;
mod validate;

pub use balance::{HEADROOM, PING_PONG_SECS, band, target_imbalance};
pub use cost::{DEMAND_WINDOWS_SECS, migration_secs};
pub use entitlement::{Claim, deliver, divvy};
pub use gate::{Gate, Room, Verdict};
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
use order::Want;
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

    let mut wants = order::mandatory_wants(&st);
    let (chosen, mut balance_summary) = balance::balance(&mut st);
    wants.extend(chosen.iter().map(|c| Want { vm: c.vm, from: c.from, to: c.to, reason: Reason::Balance }));

    // The order a cluster can carry out; what cannot be ordered stays where it is.
    let mut ordered = order::sequence(&st, &wants);
    if !ordered.dropped.is_empty() {
        // The balancing moves were chosen together: without the dropped ones, the kept ones may leave the pool
        // worse than no balancing at all. Then none is kept.
        let balancing: Vec<Want> = wants.iter().copied().filter(|w| w.reason == Reason::Balance).collect();
        let kept: Vec<Want> = balancing.iter().copied().filter(|w| !ordered.dropped.contains(w)).collect();
        let put = |st: &mut PoolState, ws: &[Want], back: bool| {
            for w in ws {
                st.remove(w.vm);
                st.place(w.vm, if back { w.from } else { w.to });
            }
        };
        put(&mut st, &ordered.dropped, true);
        let with_kept = st.imbalance();
        put(&mut st, &kept, true);
        let with_none = st.imbalance();
        put(&mut st, &kept, false);
        put(&mut st, &ordered.dropped, false);
        if !kept.is_empty() && with_kept > with_none + 1e-12 {
            wants.retain(|w| w.reason != Reason::Balance);
            ordered = order::sequence(&st, &wants);
            ordered.dropped = balancing;
        }
    }
    for w in ordered.dropped.iter().chain(ordered.cycles.iter().flatten()).chain(ordered.stuck.iter().map(|s| &s.0)) {
        st.remove(w.vm);
        st.place(w.vm, w.from);
        if w.reason == Reason::Balance {
            st.reason[w.vm] = None;
        }
    }
    if !ordered.dropped.is_empty() {
        balance_summary.push_str(&format!(
            "; {} balancing move(s) dropped: no order lets their targets take them in time",
            ordered.dropped.len()
        ));
    }
    for cycle in &ordered.cycles {
        let vms: Vec<String> = cycle.iter().map(|w| st.vms[w.vm].name.clone()).collect();
        let path = cycle
            .iter()
            .map(|w| format!("{} {} -> {}", st.vms[w.vm].name, st.nodes[w.from].name, st.nodes[w.to].name))
            .collect::<Vec<_>>()
            .join(", ");
        for w in cycle {
            found.blocked.push(Blocked {
                vm: st.vms[w.vm].name.clone(),
                node: Some(st.nodes[w.from].name.clone()),
                wanted: w.reason,
                reason: BlockedReason::Cycle { vms: vms.clone() },
                why: format!(
                    "{}: its move is part of the cycle {path}; each target is too full to take its VM before \
                     the next one leaves, and no other node has room to stage one of them",
                    mandatory::wanted_words(w.reason)
                ),
            });
        }
    }
    for (w, stays) in &ordered.stuck {
        let stays: Vec<&str> = stays.iter().take(4).map(|&u| st.vms[u].name.as_str()).collect();
        found.blocked.push(Blocked {
            vm: st.vms[w.vm].name.clone(),
            node: Some(st.nodes[w.from].name.clone()),
            wanted: w.reason,
            reason: BlockedReason::NoCapacity,
            why: format!(
                "{}: {} has no room for it while {} stay",
                mandatory::wanted_words(w.reason),
                st.nodes[w.to].name,
                stays.join(", ")
            ),
        });
    }

    // New VMs wait for the moves that make room for them; one whose room could not be made is not placed.
    for (v, deps) in &ordered.placements {
        let name = &st.vms[*v].name;
        let Some(i) = found.placements.iter().position(|p| &p.vm == name) else { continue };
        match deps {
            Ok(deps) => {
                let p = &mut found.placements[i];
                p.after = deps.iter().map(|&d| st.vms[ordered.steps[d].vm].name.clone()).collect();
                p.waits = deps
                    .iter()
                    .map(|&d| {
                        let s = &ordered.steps[d];
                        format!("after {} leaves {}", st.vms[s.vm].name, st.nodes[s.from].name)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            Err(stays) => {
                let p = found.placements.remove(i);
                let stays: Vec<&str> = stays.iter().take(4).map(|&u| st.vms[u].name.as_str()).collect();
                st.remove(*v);
                st.reason[*v] = None;
                found.blocked.push(Blocked {
                    vm: p.vm,
                    node: None,
                    wanted: Reason::Placement,
                    reason: BlockedReason::NoCapacity,
                    why: format!(
                        "{}: {} has no room for it while {} stay",
                        mandatory::wanted_words(Reason::Placement),
                        p.node,
                        stays.join(", ")
                    ),
                });
            }
        }
    }

    let moves = assemble(&mut st, &ordered.steps, &chosen);
    let loads = (0..st.nodes.len())
        .map(|h| NodeLoad {
            node: st.nodes[h].name.clone(),
            cpu: st.ratio(h, Resource::Cpu),
            memory: st.ratio(h, Resource::Memory),
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

/// The ordered steps as the plan's moves: reasons in words, what each waits for, and concurrency slots (taken
/// in order by the moves that can start now).
fn assemble(st: &mut PoolState, steps: &[order::Step], chosen: &[balance::Chosen]) -> Vec<Move> {
    let bw = st.snap.pool.migration_bandwidth_bytes_per_sec;
    st.reset_slots();
    let mut moves = Vec::with_capacity(steps.len());
    for s in steps {
        let vm = st.vms[s.vm];
        let recommend_only = vm.automation == VmAutomation::Manual;
        let deferred = !recommend_only && s.after.is_empty() && !st.take_slot(s.from, s.to);
        let after: Vec<String> = s.after.iter().map(|&d| st.vms[steps[d].vm].name.clone()).collect();
        let waits = s
            .after
            .iter()
            .map(|&d| {
                let dep = &steps[d];
                if dep.vm == s.vm {
                    format!("after {} reaches {}", vm.name, st.nodes[dep.to].name)
                } else {
                    format!("after {} leaves {}", st.vms[dep.vm].name, st.nodes[dep.from].name)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let (goodness, mut why) = match chosen.iter().find(|c| c.vm == s.vm && s.reason == Reason::Balance) {
            Some(c) => (c.goodness, balance_why(st, c)),
            None => (0.0, mandatory_why(st, s.vm, st.origin[s.vm].unwrap_or(s.from), s.reason)),
        };
        if s.staged {
            why = format!(
                "staged on {} on its way to {} (its target has no room before another VM leaves): {why}",
                st.nodes[s.to].name, st.nodes[s.final_to].name
            );
        }
        moves.push(Move {
            vm: vm.name.clone(),
            from: st.nodes[s.from].name.clone(),
            to: st.nodes[s.to].name.clone(),
            reason: s.reason,
            goodness,
            migration_secs: cost::migration_secs(vm.memory_size_bytes, vm.dirty_rate_bytes_per_sec, bw),
            recommend_only,
            deferred,
            why,
            after,
            waits,
        });
    }
    moves
}

fn balance_why(st: &PoolState, c: &balance::Chosen) -> String {
    match c.relieves {
        Some((r, ratio)) => format!(
            "relieve: {} is short, its VMs are entitled to {:.0}% of its {}; {} at {:.0}% load takes one \
             (relief down to {:.0}%); lowers the imbalance by {:.4}",
            st.nodes[c.from].name,
            ratio * 100.0,
            match r {
                Resource::Cpu => "CPU",
                Resource::Memory => "memory",
            },
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
    }
}

fn mandatory_why(st: &PoolState, v: usize, from: usize, reason: Reason) -> String {
    let node = &st.nodes[from].name;
    match (reason, st.aside[v]) {
        (Reason::Balance | Reason::Placement, _) => {}
        (_, Some((true, u))) => {
            return format!(
                "out of the way: leaves node {node} to make room for {}, which must move ({})",
                st.vms[u].name,
                reason.as_str()
            );
        }
        (_, Some((false, u))) => {
            return format!(
                "moves with {} to keep their required affinity group together ({})",
                st.vms[u].name,
                reason.as_str()
            );
        }
        (_, None) => {}
    }
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
