//! The gate between a plan and a cluster: which of the plan's moves and placements are carried out now,
//! which are only recommended, and which wait. The operator and the simulator both call it, so that
//! `kubedrs simulate`, `kubedrs plan` and the running operator agree on what happens.
//!
//! The gate owns no limit: concurrency, backoff after failures, cooldowns and the per-day cap are the
//! plan's (a move without a slot is `deferred`, a VM backing off is `blocked`). What is left here is what a
//! plan cannot know: the pool's automation level and `paused` switch, the dry run, the balancing clock,
//! and whether the VM is still where the plan saw it.
//!
//! [`Room`] is the one rule of admission both carry out before they act: a node admits a pod only when its
//! requests fit what is left of its allocatable (as the kubelet does).

use crate::model::{Automation, Snapshot, Vm};
use crate::plan::{Move, Placement, Reason};
use std::collections::{BTreeMap, BTreeSet};

/// The switches of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// The pool's automation level.
    pub automation: Automation,
    /// The pool's `paused`: everything is recommended, nothing executed.
    pub paused: bool,
    /// Nothing is written: what would be done is recommended.
    pub dry_run: bool,
    /// Balancing runs once per `interval`; passes triggered by changes in between execute only placements
    /// and mandatory moves.
    pub balance_due: bool,
}

/// What happens to one move or placement now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Carry it out.
    Execute,
    /// Show it (status, Events) but do not carry it out; the words say why.
    Recommend(String),
    /// Not now (a later pass will plan it again); the words say why.
    Hold(String),
}

impl Gate {
    /// Does the automation level carry out work of this reason?
    pub fn level_executes(&self, reason: Reason) -> bool {
        match self.automation {
            Automation::Manual => false,
            Automation::PartiallyAutomated => reason.is_mandatory(),
            Automation::FullyAutomated => true,
        }
    }

    /// The verdict on a planned move, given the node the VM is on now (`None`: not running).
    pub fn of_move(&self, m: &Move, vm_node_now: Option<&str>) -> Verdict {
        if self.paused {
            return Verdict::Recommend(format!("pool is paused; {}", m.why));
        }
        if m.recommend_only {
            return Verdict::Recommend(format!("the VM's kubedrs.io/automation is Manual; {}", m.why));
        }
        if !self.level_executes(m.reason) {
            return Verdict::Recommend(format!("automation {:?} only recommends this; {}", self.automation, m.why));
        }
        if m.reason == Reason::Balance && !self.balance_due {
            return Verdict::Hold("balancing runs once per interval".into());
        }
        if !m.after.is_empty() {
            // The plan's order: its target has room only once these moves have finished.
            return Verdict::Hold(format!("waits: {}", m.waits));
        }
        if m.deferred {
            return Verdict::Hold("no concurrency slot now: it starts when one frees".into());
        }
        if vm_node_now != Some(m.from.as_str()) {
            return Verdict::Hold(format!("the VM is no longer on {}", m.from));
        }
        if self.dry_run {
            return Verdict::Recommend(format!("dry run; {}", m.why));
        }
        Verdict::Execute
    }

    /// The verdict on a planned placement of a new VM.
    pub fn of_placement(&self, p: &Placement) -> Verdict {
        if self.paused {
            Verdict::Recommend("pool is paused".into())
        } else if !self.level_executes(Reason::Placement) {
            Verdict::Recommend(format!("automation {:?} only recommends placement", self.automation))
        } else if !p.after.is_empty() {
            // The plan's order: its node has room only once these moves have finished.
            Verdict::Hold(format!("waits: {}", p.waits))
        } else if self.dry_run {
            Verdict::Recommend("dry run".into())
        } else {
            Verdict::Execute
        }
    }
}

/// What each node's pods request now, against its capacity for VMs (allocatable minus the requests of the
/// pods that are not VMs): the kubelet admits a pod only when its requests fit what is left. The operator and
/// the simulator ask it before they bind a pod or create a migration to a node, and count what they start.
#[derive(Debug, Clone, Default)]
pub struct Room {
    /// Per node: capacity and requests counted (CPU millicores, memory bytes).
    nodes: BTreeMap<String, ([u64; 2], [u64; 2])>,
    /// (VM, node) pairs counted, so that a VM is counted once per node.
    counted: BTreeSet<(String, String)>,
}

impl Room {
    /// The nodes of a snapshot with every VM counted on its node, and every migration in flight on its target
    /// too (its target pod holds its requests there while the source still holds them).
    pub fn of(snapshot: &Snapshot) -> Room {
        let mut room = Room {
            nodes: snapshot
                .nodes
                .iter()
                .map(|n| (n.name.clone(), ([n.capacity.cpu_millis, n.capacity.memory_bytes], [0, 0])))
                .collect(),
            counted: BTreeSet::new(),
        };
        let vms: BTreeMap<&str, &Vm> = snapshot.vms.iter().map(|v| (v.name.as_str(), v)).collect();
        for vm in &snapshot.vms {
            if let Some(n) = &vm.node {
                room.take(vm, n);
            }
        }
        for m in snapshot.in_flight.iter().filter(|m| !m.target.is_empty()) {
            if let Some(vm) = vms.get(m.vm.as_str()) {
                room.take(vm, &m.target);
            }
        }
        room
    }

    /// Does `vm`'s pod fit on `node` now? When it does not, why, in words. A VM counted there already (the
    /// target pod of a migration in flight) fits when the node is within its allocatable.
    pub fn check(&self, vm: &Vm, node: &str) -> Result<(), String> {
        let Some(&(cap, used)) = self.nodes.get(node) else {
            return Err(format!("{node} is not a node of the pool"));
        };
        let here = self.counted.contains(&(vm.name.clone(), node.to_string()));
        let want = if here { [0, 0] } else { [vm.cpu.reservation, vm.memory.reservation] };
        if (0..2).all(|k| used[k] + want[k] <= cap[k]) {
            return Ok(());
        }
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let cores = |m: u64| m as f64 / 1000.0;
        Err(format!(
            "waits for room: {node} has {:.1} CPU and {:.1} GiB of requests free, {} requests {:.1} CPU and {:.1} GiB",
            cores(cap[0].saturating_sub(used[0])),
            gib(cap[1].saturating_sub(used[1])),
            vm.name,
            cores(vm.cpu.reservation),
            gib(vm.memory.reservation)
        ))
    }

    /// Counts `vm`'s requests on `node` (a pod bound, a migration created); once per VM and node.
    pub fn take(&mut self, vm: &Vm, node: &str) {
        if !self.counted.insert((vm.name.clone(), node.to_string())) {
            return;
        }
        if let Some((_, used)) = self.nodes.get_mut(node) {
            used[0] += vm.cpu.reservation;
            used[1] += vm.memory.reservation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(reason: Reason) -> Move {
        Move {
            vm: "ns/a".into(),
            from: "n1".into(),
            to: "n2".into(),
            reason,
            goodness: 0.1,
            migration_secs: 10.0,
            recommend_only: false,
            deferred: false,
            why: "because".into(),
            after: vec![],
            waits: String::new(),
        }
    }

    fn placement() -> Placement {
        Placement { vm: "ns/new".into(), node: "n2".into(), why: "best".into(), after: vec![], waits: String::new() }
    }

    const FULL: Gate =
        Gate { automation: Automation::FullyAutomated, paused: false, dry_run: false, balance_due: true };

    #[test]
    fn fully_automated_executes_what_is_ready() {
        assert_eq!(FULL.of_move(&mv(Reason::Balance), Some("n1")), Verdict::Execute);
        assert_eq!(FULL.of_placement(&placement()), Verdict::Execute);
    }

    #[test]
    fn levels_switches_and_the_vm_decide_in_order() {
        let partial = Gate { automation: Automation::PartiallyAutomated, ..FULL };
        assert!(matches!(partial.of_move(&mv(Reason::Balance), Some("n1")), Verdict::Recommend(_)));
        assert_eq!(partial.of_move(&mv(Reason::Maintenance), Some("n1")), Verdict::Execute);
        let manual = Gate { automation: Automation::Manual, ..FULL };
        assert!(matches!(manual.of_move(&mv(Reason::Maintenance), Some("n1")), Verdict::Recommend(_)));
        assert!(matches!(manual.of_placement(&placement()), Verdict::Recommend(_)));
        let paused = Gate { paused: true, ..FULL };
        assert!(matches!(paused.of_move(&mv(Reason::Rule), Some("n1")), Verdict::Recommend(w) if w.contains("paused")));
        let early = Gate { balance_due: false, ..FULL };
        assert!(matches!(early.of_move(&mv(Reason::Balance), Some("n1")), Verdict::Hold(_)));
        assert_eq!(early.of_move(&mv(Reason::Maintenance), Some("n1")), Verdict::Execute);
        let deferred = Move { deferred: true, ..mv(Reason::Maintenance) };
        assert!(matches!(FULL.of_move(&deferred, Some("n1")), Verdict::Hold(w) if w.contains("slot")));
        assert!(matches!(FULL.of_move(&mv(Reason::Balance), Some("n3")), Verdict::Hold(w) if w.contains("no longer")));
        let waiting =
            Move { after: vec!["ns/c".into()], waits: "after ns/c leaves n2".into(), ..mv(Reason::Maintenance) };
        assert!(matches!(FULL.of_move(&waiting, Some("n1")), Verdict::Hold(w) if w == "waits: after ns/c leaves n2"));
        let manual_vm = Move { recommend_only: true, ..mv(Reason::Maintenance) };
        assert!(matches!(FULL.of_move(&manual_vm, Some("n1")), Verdict::Recommend(w) if w.contains("Manual")));
        let dry = Gate { dry_run: true, ..FULL };
        assert!(
            matches!(dry.of_move(&mv(Reason::Balance), Some("n1")), Verdict::Recommend(w) if w.contains("dry run"))
        );
        assert!(matches!(dry.of_placement(&placement()), Verdict::Recommend(_)));
        let waiting = Placement { after: vec!["ns/c".into()], waits: "after ns/c leaves n2".into(), ..placement() };
        assert!(matches!(FULL.of_placement(&waiting), Verdict::Hold(w) if w == "waits: after ns/c leaves n2"));
        assert!(matches!(manual.of_placement(&waiting), Verdict::Recommend(_)));
    }

    #[test]
    fn room_counts_every_vm_on_its_node_and_migrations_on_their_target() {
        use crate::model::{InFlight, Node};
        let node = |n: &str| Node::test(n).gib(64);
        let vm = |name: &str, node: Option<&str>| {
            let mut v = Vm::test(name).reserve(1.0, 40.0);
            v.node = node.map(String::from);
            v
        };
        let mut snap = Snapshot::test(vec![node("n1"), node("n2")], vec![vm("a", Some("n1")), vm("b", None)]);
        let room = Room::of(&snap);
        assert_eq!(room.check(&snap.vms[1], "n2"), Ok(()));
        let full = room.check(&snap.vms[1], "n1").unwrap_err();
        assert!(
            full.starts_with("waits for room: n1 has 15.0 CPU and 24.0 GiB of requests free, b requests"),
            "{full}"
        );
        // a migrating to n2 holds its requests there too; counted once, so it still fits there itself.
        snap.in_flight.push(InFlight { vm: "a".into(), source: "n1".into(), target: "n2".into() });
        let mut room = Room::of(&snap);
        assert!(room.check(&snap.vms[1], "n2").is_err());
        assert_eq!(room.check(&snap.vms[0], "n2"), Ok(()));
        // What a pass starts counts for the next action.
        let mut fresh = Room::of(&Snapshot::test(vec![node("n3")], vec![]));
        fresh.take(&snap.vms[1], "n3");
        assert!(fresh.check(&snap.vms[0], "n3").is_err());
        room.take(&snap.vms[0], "n2");
        assert_eq!(room.check(&snap.vms[0], "n2"), Ok(()));
        assert!(room.check(&snap.vms[0], "n9").is_err());
    }
}
