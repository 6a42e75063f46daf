//! The gate between a plan and a cluster: which of the plan's moves and placements are carried out now,
//! which are only recommended, and which wait. The operator and the simulator both call it, so that
//! `kubedrs simulate`, `kubedrs plan` and the running operator agree on what happens.
//!
//! The gate owns no limit: concurrency, backoff after failures, cooldowns and the per-day cap are the
//! plan's (a move without a slot is `deferred`, a VM backing off is `blocked`). What is left here is what a
//! plan cannot know: the pool's automation level and `paused` switch, the dry run, the balancing clock,
//! and whether the VM is still where the plan saw it.

use crate::model::Automation;
use crate::plan::{Move, Reason};

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
    pub fn of_placement(&self) -> Verdict {
        if self.paused {
            Verdict::Recommend("pool is paused".into())
        } else if !self.level_executes(Reason::Placement) {
            Verdict::Recommend(format!("automation {:?} only recommends placement", self.automation))
        } else if self.dry_run {
            Verdict::Recommend("dry run".into())
        } else {
            Verdict::Execute
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

    const FULL: Gate =
        Gate { automation: Automation::FullyAutomated, paused: false, dry_run: false, balance_due: true };

    #[test]
    fn fully_automated_executes_what_is_ready() {
        assert_eq!(FULL.of_move(&mv(Reason::Balance), Some("n1")), Verdict::Execute);
        assert_eq!(FULL.of_placement(), Verdict::Execute);
    }

    #[test]
    fn levels_switches_and_the_vm_decide_in_order() {
        let partial = Gate { automation: Automation::PartiallyAutomated, ..FULL };
        assert!(matches!(partial.of_move(&mv(Reason::Balance), Some("n1")), Verdict::Recommend(_)));
        assert_eq!(partial.of_move(&mv(Reason::Maintenance), Some("n1")), Verdict::Execute);
        let manual = Gate { automation: Automation::Manual, ..FULL };
        assert!(matches!(manual.of_move(&mv(Reason::Maintenance), Some("n1")), Verdict::Recommend(_)));
        assert!(matches!(manual.of_placement(), Verdict::Recommend(_)));
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
        assert!(matches!(dry.of_placement(), Verdict::Recommend(_)));
    }
}
