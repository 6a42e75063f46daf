//! Maintenance mode on nodes: cordon, report the evacuation, uncordon.
//!
//! Part of **actuate**. The evacuation itself is the plan's `maintenance` moves, executed by
//! [`crate::actuate`]; this module decides, purely, what the nodes' own objects must say:
//!
//! - `kubedrs.io/maintenance: "true"` (or a cordon, when the pool has `maintenance.honorCordon: true`)
//!   requests maintenance;
//! - when maintenance was requested by the annotation and the node is schedulable, kubedrs cordons it and
//!   marks it `kubedrs.io/maintenance-cordoned: "true"`, so that it uncordons at the end only a node it
//!   cordoned itself;
//! - `kubedrs.io/maintenance-state` is `Entering` while VMs are leaving, `InMaintenance` when none is
//!   left, `Blocked` when some cannot leave (the plan's `blocked`, or the pool does not execute maintenance:
//!   Manual automation, paused); `kubedrs.io/maintenance-message` says what is left or why, in words;
//! - when the request goes away, kubedrs uncordons (if it cordoned) and removes its annotations.
//!
//! Under `--dry-run` nothing is patched; the state changes are still reported as Events.

use std::collections::BTreeMap;

use crate::actuate::{Action, EventKind, EventSpec, Target};
use crate::keys;
use crate::migrations::Ledger;
use kubedrs_engine::{Automation, NodeState, Plan, Reason, Snapshot};

pub use crate::keys::CORDONED_BY_KUBEDRS;

/// `kubedrs.io/maintenance-state` values.
pub const STATE_ENTERING: &str = "Entering";
pub const STATE_IN_MAINTENANCE: &str = "InMaintenance";
pub const STATE_BLOCKED: &str = "Blocked";

/// What maintenance needs to know of a node object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    pub name: String,
    /// `kubedrs.io/maintenance: "true"`.
    pub annotated: bool,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `kubedrs.io/maintenance-cordoned: "true"`.
    pub cordoned_by_kubedrs: bool,
    /// Current `kubedrs.io/maintenance-state` and `-message` annotations.
    pub state: Option<String>,
    /// Current `kubedrs.io/maintenance-state` label (the mirror of the annotation).
    pub state_label: Option<String>,
    pub message: Option<String>,
}

impl NodeView {
    /// Is maintenance requested (by the annotation, or by a cordon the pool honours)?
    pub fn requested(&self, honor_cordon: bool) -> bool {
        self.annotated || (honor_cordon && self.unschedulable && !self.cordoned_by_kubedrs)
    }

    /// Does the node carry anything kubedrs wrote (state, label, message, its cordon mark)?
    pub fn carries_marks(&self) -> bool {
        self.state.is_some() || self.state_label.is_some() || self.message.is_some() || self.cordoned_by_kubedrs
    }
}

/// The pool settings maintenance depends on.
#[derive(Debug, Clone, Copy)]
pub struct MaintenancePolicy {
    pub honor_cordon: bool,
    pub automation: Automation,
    pub paused: bool,
    pub dry_run: bool,
}

impl MaintenancePolicy {
    /// Does the pool's automation level carry out evacuations (the gate's rule, not a copy of it)?
    fn level_executes(&self) -> bool {
        let gate = kubedrs_engine::Gate {
            automation: self.automation,
            paused: self.paused,
            dry_run: self.dry_run,
            balance_due: false,
        };
        gate.level_executes(Reason::Maintenance)
    }
}

/// The node patches and Events of one pass. `nodes` are the pool's nodes.
pub fn decide(
    nodes: &[NodeView],
    policy: MaintenancePolicy,
    snapshot: &Snapshot,
    plan: &Plan,
    ledger: &Ledger,
) -> Vec<Action> {
    let executes = !policy.paused && policy.level_executes();
    let mut out = Vec::new();
    for n in nodes {
        let mut annotations: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut unschedulable = None;
        if n.requested(policy.honor_cordon) {
            if n.annotated && !n.unschedulable && executes {
                unschedulable = Some(true);
                annotations.insert(CORDONED_BY_KUBEDRS.into(), Some("true".into()));
                let note = if policy.dry_run {
                    "dry run: would cordon the node (kubedrs.io/maintenance is true)"
                } else {
                    "kubedrs.io/maintenance is true: cordoned so that nothing new lands here"
                };
                out.push(Action::Event(
                    EventSpec::new(Target::Node(n.name.clone()), EventKind::Normal, "Cordoned", "Cordon", note)
                        .once(format!("cordon/{}", n.name)),
                ));
            }
            let (state, message) = state_of(n, policy, executes, snapshot, plan, ledger);
            if n.state.as_deref() != Some(state) {
                let kind = if state == STATE_BLOCKED { EventKind::Warning } else { EventKind::Normal };
                let reason = match state {
                    STATE_ENTERING => "EnteringMaintenance",
                    STATE_IN_MAINTENANCE => "InMaintenance",
                    _ => "MaintenanceBlocked",
                };
                out.push(Action::Event(
                    EventSpec::new(Target::Node(n.name.clone()), kind, reason, "Maintenance", message.clone())
                        .once(format!("maintenance/{}/{state}", n.name)),
                ));
                annotations.insert(keys::MAINTENANCE_STATE.into(), Some(state.into()));
            }
            if n.state_label.as_deref() != Some(state) {
                // The label mirrors the annotation (see `execute::node_patch`): `kubectl get nodes -L`.
                annotations.insert(keys::MAINTENANCE_STATE.into(), Some(state.into()));
            }
            if n.message.as_deref() != Some(message.as_str()) {
                annotations.insert(keys::MAINTENANCE_MESSAGE.into(), Some(message));
            }
        } else {
            if !n.carries_marks() {
                continue;
            }
            let (patch, event) =
                end_of_maintenance(n, !policy.paused, "maintenance ended", "balancing fills the node again");
            out.push(Action::Event(event));
            (unschedulable, annotations) = patch;
        }
        if policy.dry_run {
            continue;
        }
        if !annotations.is_empty() || unschedulable.is_some() {
            out.push(Action::PatchNode { node: n.name.clone(), unschedulable, annotations });
        }
    }
    out
}

/// A node patch: `spec.unschedulable` (`None`: unchanged) and annotations (`None` removes one).
pub type NodePatch = (Option<bool>, BTreeMap<String, Option<String>>);

/// What kubedrs takes back from a node whose maintenance ended (or whose pool is gone): its state annotations
/// and label, its message, and its own cordon when `uncordon` (a user's cordon is never lifted). Returns the
/// patch (`spec.unschedulable`, annotations to remove) and the Event saying so.
pub fn end_of_maintenance(n: &NodeView, uncordon: bool, what: &str, then: &str) -> (NodePatch, EventSpec) {
    let mut annotations: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut unschedulable = None;
    if n.cordoned_by_kubedrs && uncordon {
        if n.unschedulable {
            unschedulable = Some(false);
        }
        annotations.insert(CORDONED_BY_KUBEDRS.into(), None);
    }
    for k in [keys::MAINTENANCE_STATE, keys::MAINTENANCE_MESSAGE] {
        annotations.insert(k.into(), None);
    }
    let note = if unschedulable == Some(false) {
        format!("{what}: uncordoned (kubedrs had cordoned it); {then}")
    } else {
        format!("{what}; {then}")
    };
    let event = EventSpec::new(Target::Node(n.name.clone()), EventKind::Normal, "MaintenanceEnded", "Uncordon", note);
    ((unschedulable, annotations), event)
}

/// The maintenance state of a node asked to enter maintenance, and the message.
fn state_of(
    n: &NodeView,
    policy: MaintenancePolicy,
    executes: bool,
    snapshot: &Snapshot,
    plan: &Plan,
    ledger: &Ledger,
) -> (&'static str, String) {
    let left: Vec<&str> =
        snapshot.vms.iter().filter(|v| v.node.as_deref() == Some(n.name.as_str())).map(|v| v.name.as_str()).collect();
    if left.is_empty() {
        return (STATE_IN_MAINTENANCE, "no VM left on the node".into());
    }
    let list = list(&left, 10);
    if snapshot.nodes.iter().any(|x| x.name == n.name && x.state == NodeState::NotReady) {
        let msg =
            format!("the node is NotReady: its {} VM(s) cannot live-migrate until it is Ready: {list}", left.len());
        return (STATE_BLOCKED, msg);
    }
    let leaving = ledger.active().filter(|r| r.source.as_deref() == Some(n.name.as_str())).count();
    if !executes {
        let why = if policy.paused {
            "the pool is paused".to_string()
        } else {
            format!("automation {:?} only recommends evacuation", policy.automation)
        };
        return (STATE_BLOCKED, format!("{why}; {} VM(s) left: {list}", left.len()));
    }
    let blocked: Vec<String> = plan
        .blocked
        .iter()
        .filter(|b| b.node.as_deref() == Some(n.name.as_str()))
        .map(|b| format!("{} ({})", b.vm, b.why))
        .collect();
    if !blocked.is_empty() {
        let shown: Vec<&str> = blocked.iter().map(String::as_str).collect();
        return (
            STATE_BLOCKED,
            format!("{} of {} VM(s) cannot leave: {}", blocked.len(), left.len(), self::list(&shown, 5)),
        );
    }
    (STATE_ENTERING, format!("{} VM(s) left ({leaving} migrating now): {list}", left.len()))
}

fn list(items: &[&str], max: usize) -> String {
    let mut s = items.iter().take(max).copied().collect::<Vec<_>>().join(", ");
    if items.len() > max {
        s.push_str(&format!(" and {} more", items.len() - max));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kubedrs_engine::{Blocked, BlockedReason, Vm};

    fn policy() -> MaintenancePolicy {
        MaintenancePolicy { honor_cordon: false, automation: Automation::FullyAutomated, paused: false, dry_run: false }
    }

    fn snap(vms: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            vms: vms
                .iter()
                .map(|(v, n)| Vm { name: v.to_string(), node: Some(n.to_string()), ..Vm::default() })
                .collect(),
            ..Snapshot::default()
        }
    }

    fn node(name: &str) -> NodeView {
        NodeView { name: name.into(), ..NodeView::default() }
    }

    type Annotations = BTreeMap<String, Option<String>>;

    fn patch(actions: &[Action]) -> Option<(Option<bool>, Annotations)> {
        actions.iter().find_map(|a| match a {
            Action::PatchNode { unschedulable, annotations, .. } => Some((*unschedulable, annotations.clone())),
            _ => None,
        })
    }

    #[test]
    fn the_annotation_cordons_and_reports_entering() {
        let n = NodeView { annotated: true, ..node("n1") };
        let a = decide(&[n], policy(), &snap(&[("ns/a", "n1"), ("ns/b", "n2")]), &Plan::default(), &Ledger::default());
        let (u, ann) = patch(&a).unwrap();
        assert_eq!(u, Some(true));
        assert_eq!(ann[CORDONED_BY_KUBEDRS].as_deref(), Some("true"));
        assert_eq!(ann[keys::MAINTENANCE_STATE].as_deref(), Some("Entering"));
        assert!(ann[keys::MAINTENANCE_MESSAGE].as_deref().unwrap().contains("1 VM(s) left"));
    }

    #[test]
    fn a_node_that_is_down_blocks_its_evacuation_and_says_why() {
        let n = NodeView { annotated: true, unschedulable: true, ..node("n1") };
        let mut s = snap(&[("ns/a", "n1")]);
        s.nodes = vec![kubedrs_engine::Node { name: "n1".into(), state: NodeState::NotReady, ..Default::default() }];
        let a = decide(&[n], policy(), &s, &Plan::default(), &Ledger::default());
        let (_, ann) = patch(&a).unwrap();
        assert_eq!(ann[keys::MAINTENANCE_STATE].as_deref(), Some("Blocked"));
        assert!(ann[keys::MAINTENANCE_MESSAGE].as_deref().unwrap().contains("NotReady"), "{ann:?}");
    }

    #[test]
    fn an_empty_node_is_in_maintenance_and_nothing_repeats() {
        let n = NodeView {
            annotated: true,
            unschedulable: true,
            cordoned_by_kubedrs: true,
            state: Some("InMaintenance".into()),
            state_label: Some("InMaintenance".into()),
            message: Some("no VM left on the node".into()),
            ..node("n1")
        };
        let a =
            decide(std::slice::from_ref(&n), policy(), &snap(&[("ns/b", "n2")]), &Plan::default(), &Ledger::default());
        assert!(a.is_empty(), "{a:?}");
        // A node marked before the state was mirrored in a label gets the label, without a new Event.
        let unlabelled = NodeView { state_label: None, ..n };
        let a = decide(&[unlabelled], policy(), &snap(&[("ns/b", "n2")]), &Plan::default(), &Ledger::default());
        let (_, ann) = patch(&a).unwrap();
        assert_eq!(ann[keys::MAINTENANCE_STATE].as_deref(), Some("InMaintenance"));
        assert!(a.iter().all(|x| !matches!(x, Action::Event(_))), "{a:?}");
    }

    #[test]
    fn blocked_vms_make_the_state_blocked() {
        let n = NodeView { annotated: true, unschedulable: true, ..node("n1") };
        let plan = Plan {
            blocked: vec![Blocked {
                vm: "ns/a".into(),
                node: Some("n1".into()),
                wanted: Reason::Maintenance,
                reason: BlockedReason::Rule { rule: "db-on-ssd".into() },
                why: "required rule db-on-ssd leaves no node".into(),
            }],
            ..Plan::default()
        };
        let a = decide(&[n], policy(), &snap(&[("ns/a", "n1")]), &plan, &Ledger::default());
        let (u, ann) = patch(&a).unwrap();
        assert_eq!(u, None, "a user's cordon is left as it is");
        assert_eq!(ann[keys::MAINTENANCE_STATE].as_deref(), Some("Blocked"));
        assert!(ann[keys::MAINTENANCE_MESSAGE].as_deref().unwrap().contains("db-on-ssd"));
        assert!(a.iter().any(|x| matches!(x, Action::Event(e) if e.reason == "MaintenanceBlocked")));
    }

    #[test]
    fn leaving_maintenance_uncordons_only_what_kubedrs_cordoned() {
        let ours = NodeView {
            unschedulable: true,
            cordoned_by_kubedrs: true,
            state: Some("InMaintenance".into()),
            ..node("n1")
        };
        let (u, ann) = patch(&decide(&[ours], policy(), &snap(&[]), &Plan::default(), &Ledger::default())).unwrap();
        assert_eq!(u, Some(false));
        assert_eq!(ann.len(), 3);
        assert!(ann.values().all(Option::is_none));
        // A node the user cordoned, with honorCordon off: kubedrs only removes its own annotations.
        let theirs = NodeView { unschedulable: true, state: Some("Entering".into()), ..node("n2") };
        let (u, ann) = patch(&decide(&[theirs], policy(), &snap(&[]), &Plan::default(), &Ledger::default())).unwrap();
        assert_eq!(u, None);
        assert!(!ann.contains_key(CORDONED_BY_KUBEDRS));
        // A plain node: nothing at all.
        assert!(decide(&[node("n3")], policy(), &snap(&[]), &Plan::default(), &Ledger::default()).is_empty());
    }

    #[test]
    fn honor_cordon_makes_a_cordon_a_request() {
        let n = NodeView { unschedulable: true, ..node("n1") };
        let p = MaintenancePolicy { honor_cordon: true, ..policy() };
        let (u, ann) = patch(&decide(&[n], p, &snap(&[("ns/a", "n1")]), &Plan::default(), &Ledger::default())).unwrap();
        assert_eq!(u, None);
        assert_eq!(ann[keys::MAINTENANCE_STATE].as_deref(), Some("Entering"));
    }

    #[test]
    fn manual_pools_and_dry_runs() {
        let n = NodeView { annotated: true, ..node("n1") };
        let manual = MaintenancePolicy { automation: Automation::Manual, ..policy() };
        let a =
            decide(std::slice::from_ref(&n), manual, &snap(&[("ns/a", "n1")]), &Plan::default(), &Ledger::default());
        let (u, ann) = patch(&a).unwrap();
        assert_eq!(u, None, "Manual does not cordon");
        assert_eq!(ann[keys::MAINTENANCE_STATE].as_deref(), Some("Blocked"));
        let dry = MaintenancePolicy { dry_run: true, ..policy() };
        let a = decide(&[n], dry, &snap(&[("ns/a", "n1")]), &Plan::default(), &Ledger::default());
        assert!(patch(&a).is_none());
        assert!(a.iter().any(|x| matches!(x, Action::Event(e) if e.reason == "EnteringMaintenance")));
    }
}
