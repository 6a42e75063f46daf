//! **actuate**: turns a gated plan into actions (in the vocabulary of [`crate::action`], re-exported here).
//!
//! Step 5 of [`crate::pass`]. [`decide`] is a pure function from the plan, the pass's [`Gate`], the pending
//! pods kubedrs schedules and kubedrs' migrations to a list of [`Action`]s and the recommendations the status
//! shows. It owns no limit: concurrency, one migration per VMI, backoff after failures, cooldowns and the
//! per-day cap are the engine's (a move without a slot comes `deferred`, a VM already migrating or backing
//! off comes `blocked`), fed every migration in flight, including the ones this operator created moments
//! ago. What the gate adds: `paused`, the automation level, a VM's `kubedrs.io/automation: Manual`, the
//! dry run, the balancing clock, and "the VM is no longer where the plan saw it". Before it binds a pod or
//! creates a migration, it checks that the pod's requests fit what is left of the node's allocatable now
//! ([`kubedrs_engine::Room`], the kubelet's admission rule, which the simulator applies too), counting what
//! the pass starts; otherwise the action is held, with why.
//!
//! Events for decisions that last (recommendations, backoff, blocked placement) carry a `once` key so that
//! [`crate::events::EventMemo`] emits them once per change, not every pass. The executor that
//! applies the actions with a client is [`crate::execute`].

use std::collections::{BTreeMap, BTreeSet};

pub use crate::action::*;
use crate::crd::Recommendation;
use crate::migrations::{Ledger, MigrationRecord};
use kubedrs_engine::{BlockedReason, Gate, Plan, Reason, Room, Snapshot, Verdict, Vm};

/// Everything a pass decides on, for one pool.
#[derive(Debug, Clone)]
pub struct PassInput<'a> {
    pub pool: &'a str,
    /// The pool's switches (automation, paused, dry run, balancing clock).
    pub gate: Gate,
    pub snapshot: &'a Snapshot,
    pub plan: &'a Plan,
    pub ledger: &'a Ledger,
    pub pending_pods: &'a [PendingPod],
    /// Finished migrations to keep beyond the 24 h history.
    pub keep_finished: usize,
    /// Unix seconds.
    pub now: i64,
}

/// A move or placement the plan wanted that actuate did not start this pass, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub vm: String,
    pub why: String,
}

/// The output of [`decide`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// Moves and placements recommended, not executed (status `recommendations`).
    pub recommendations: Vec<Recommendation>,
    /// Executable moves held back (in flight, backoff, no slot), for logs and status.
    pub held: Vec<Held>,
}

impl Decision {
    fn event(&mut self, e: EventSpec) {
        self.actions.push(Action::Event(e));
    }
}

/// The pure core of actuation. Same inputs, same actions.
pub fn decide(input: &PassInput<'_>) -> Decision {
    let mut d = Decision::default();
    let vm_nodes: BTreeMap<&str, Option<&str>> =
        input.snapshot.vms.iter().map(|v| (v.name.as_str(), v.node.as_deref())).collect();
    let vms: BTreeMap<&str, &Vm> = input.snapshot.vms.iter().map(|v| (v.name.as_str(), v)).collect();
    // The kubelet admits a pod only when its requests fit what is left of the node's allocatable: nothing is
    // bound or migrated to a node without room now, counting what this pass starts.
    let mut room = Room::of(input.snapshot);
    let fits = |room: &mut Room, vm: &str, node: &str| -> Result<(), String> {
        let Some(v) = vms.get(vm) else { return Ok(()) };
        room.check(v, node)?;
        room.take(v, node);
        Ok(())
    };

    // Migrations: mandatory first, then balancing, in the plan's order. The plan owns every limit
    // (concurrency, backoff, cooldowns); the gate adds the pool's switches.
    for m in &input.plan.moves {
        match input.gate.of_move(m, vm_nodes.get(m.vm.as_str()).copied().flatten()) {
            Verdict::Recommend(why) => {
                d.recommendations.push(Recommendation {
                    vm: m.vm.clone(),
                    from: Some(m.from.clone()),
                    to: m.to.clone(),
                    reason: m.reason.as_str().into(),
                    why: why.clone(),
                });
                d.event(
                    EventSpec::new(
                        Target::vm(&m.vm),
                        EventKind::Normal,
                        "Recommended",
                        "Recommend",
                        format!("recommend migrating from {} to {} ({}): {why}", m.from, m.to, m.reason.as_str()),
                    )
                    .once(format!("recommend/{}/{}/{}", m.vm, m.to, m.reason.as_str())),
                );
            }
            Verdict::Hold(why) => d.held.push(Held { vm: m.vm.clone(), why }),
            Verdict::Execute => {
                if let Err(why) = fits(&mut room, &m.vm, &m.to) {
                    d.held.push(Held { vm: m.vm.clone(), why });
                    continue;
                }
                let (namespace, vmi) = split_key(&m.vm);
                d.actions.push(Action::CreateMigration {
                    namespace: namespace.into(),
                    vmi: vmi.into(),
                    from: m.from.clone(),
                    to: m.to.clone(),
                    reason: m.reason,
                    why: m.why.clone(),
                });
                d.event(EventSpec::new(
                    Target::vm(&m.vm),
                    EventKind::Normal,
                    "Migrating",
                    "Migrate",
                    format!("migrating from {} to {} ({}): {}", m.from, m.to, m.reason.as_str(), m.why),
                ));
            }
        }
    }
    // VMs backing off after failed migrations: said once per count of failures.
    for b in &input.plan.blocked {
        if let BlockedReason::BackingOff { failures, retry_in_secs } = b.reason {
            d.event(
                EventSpec::new(
                    Target::vm(&b.vm),
                    EventKind::Warning,
                    "BackingOff",
                    "Migrate",
                    format!("{failures} failed migration(s) in a row: backing off for {retry_in_secs}s"),
                )
                .once(format!("backoff/{}/{failures}", b.vm)),
            );
        }
    }

    // Initial placement of pending virt-launcher pods kubedrs schedules.
    let launch: BTreeMap<&str, &PendingPod> =
        input.pending_pods.iter().filter(|p| p.kind == PodKind::Launch).map(|p| (p.vm.as_str(), p)).collect();
    for p in &input.plan.placements {
        let Some(pod) = launch.get(p.vm.as_str()) else { continue };
        let why = match input.gate.of_placement(p) {
            Verdict::Execute => None,
            Verdict::Recommend(why) => Some(why),
            Verdict::Hold(why) => {
                // The plan's order: a VM moved out of the way must have left the node first.
                d.held.push(Held { vm: p.vm.clone(), why });
                continue;
            }
        };
        if let Some(why) = why {
            d.recommendations.push(Recommendation {
                vm: p.vm.clone(),
                from: None,
                to: p.node.clone(),
                reason: Reason::Placement.as_str().into(),
                why: format!("{why}; {}", p.why),
            });
            d.event(
                EventSpec::new(
                    pod_target(pod),
                    EventKind::Normal,
                    "Recommended",
                    "Recommend",
                    format!("recommend placing on {} ({why}): {}", p.node, p.why),
                )
                .once(format!("recommend/{}/{}/placement", p.vm, p.node)),
            );
            continue;
        }
        if let Err(why) = fits(&mut room, &p.vm, &p.node) {
            d.held.push(Held { vm: p.vm.clone(), why });
            continue;
        }
        d.actions.push(Action::Bind {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            node: p.node.clone(),
            vm: p.vm.clone(),
            why: p.why.clone(),
        });
        d.event(EventSpec::new(
            pod_target(pod),
            EventKind::Normal,
            "Placed",
            "Bind",
            format!("placed on {}: {}", p.node, p.why),
        ));
    }
    for b in input.plan.blocked.iter().filter(|b| b.wanted == Reason::Placement) {
        let Some(pod) = launch.get(b.vm.as_str()) else { continue };
        d.event(
            EventSpec::new(
                pod_target(pod),
                EventKind::Warning,
                "FailedPlacement",
                "Bind",
                format!("no node for the VM ({}): {}; retrying on the next pass", blocked_word(&b.reason), b.why),
            )
            .once(format!("blocked/{}/{}", b.vm, b.why)),
        );
    }

    // Target pods of migrations: bound to the migration's target, whatever the automation level (the
    // migration exists already; a pending target pod would only hold it).
    for pod in input.pending_pods {
        let PodKind::MigrationTarget { target, source, node_selector } = &pod.kind else { continue };
        let (node, why) = match target {
            Some(t) => (Some(t.clone()), format!("the migration's target node {t}")),
            None => (
                least_loaded(input, source.as_deref(), node_selector, |n| {
                    vms.get(pod.vm.as_str()).is_none_or(|v| room.check(v, n).is_ok())
                }),
                "the least loaded node of the pool that fits the pod's node selector and has room for it".to_string(),
            ),
        };
        let no_room = node.as_deref().and_then(|n| fits(&mut room, &pod.vm, n).err());
        match node {
            Some(node) if no_room.is_some() => {
                let why = no_room.unwrap_or_default();
                d.held.push(Held { vm: pod.vm.clone(), why: why.clone() });
                d.event(
                    EventSpec::new(
                        pod_target(pod),
                        EventKind::Warning,
                        "FailedPlacement",
                        "Bind",
                        format!("migration target not bound to {node}: {why}; retrying on the next pass"),
                    )
                    .once(format!("target-no-room/{}/{node}", pod.name)),
                );
            }
            Some(node) if !input.gate.dry_run => {
                d.actions.push(Action::Bind {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    node: node.clone(),
                    vm: pod.vm.clone(),
                    why: why.clone(),
                });
                d.event(EventSpec::new(
                    pod_target(pod),
                    EventKind::Normal,
                    "Placed",
                    "Bind",
                    format!("migration target placed on {node}: {why}"),
                ));
            }
            Some(node) => d.event(
                EventSpec::new(
                    pod_target(pod),
                    EventKind::Normal,
                    "Recommended",
                    "Recommend",
                    format!("dry run: would bind the migration target to {node}: {why}"),
                )
                .once(format!("dry-run-target/{}/{}", pod.name, node)),
            ),
            None => d.event(
                EventSpec::new(
                    pod_target(pod),
                    EventKind::Warning,
                    "FailedPlacement",
                    "Bind",
                    "no ready node of the pool fits the migration target pod; retrying on the next pass",
                )
                .once(format!("target-blocked/{}", pod.name)),
            ),
        }
    }

    // Garbage collection of old finished migrations.
    if !input.gate.dry_run {
        for r in input.ledger.collectable(input.keep_finished, input.now) {
            d.actions.push(Action::DeleteMigration { namespace: r.namespace.clone(), name: r.name.clone() });
        }
    }
    d
}

fn pod_target(p: &PendingPod) -> Target {
    Target::Pod { namespace: p.namespace.clone(), name: p.name.clone() }
}

/// The short word of a blocked reason (`NoCapacity`...), as the status lists it.
pub fn blocked_word(r: &BlockedReason) -> &'static str {
    match r {
        BlockedReason::NoCapacity => "NoCapacity",
        BlockedReason::Rule { .. } => "Rule",
        BlockedReason::CpuModel { .. } => "CpuModel",
        BlockedReason::AutomationDisabled => "AutomationDisabled",
        BlockedReason::NotLiveMigratable => "NotLiveMigratable",
        BlockedReason::SourceNotReady => "SourceNotReady",
        BlockedReason::InFlight => "InFlight",
        BlockedReason::NoEligibleNode => "NoEligibleNode",
        BlockedReason::BackingOff { .. } => "BackingOff",
        BlockedReason::Cycle { .. } => "Cycle",
    }
}

/// The counted node with the lowest combined load after the plan, other than `source`, whose labels match
/// `selector` (a migration target pod's node selector) and that has `room` for the pod.
fn least_loaded(
    input: &PassInput<'_>,
    source: Option<&str>,
    selector: &BTreeMap<String, String>,
    room: impl Fn(&str) -> bool,
) -> Option<String> {
    let labels: BTreeMap<&str, &kubedrs_engine::Labels> =
        input.snapshot.nodes.iter().filter(|n| n.state.accepts_vms()).map(|n| (n.name.as_str(), &n.labels)).collect();
    input
        .plan
        .loads
        .iter()
        .filter(|l| l.counted && Some(l.node.as_str()) != source)
        .filter(|l| labels.get(l.node.as_str()).is_some_and(|ls| selector.iter().all(|(k, v)| ls.get(k) == Some(v))))
        .filter(|l| room(&l.node))
        .min_by(|a, b| a.combined.total_cmp(&b.combined).then_with(|| a.node.cmp(&b.node)))
        .map(|l| l.node.clone())
}

/// Migrations of the pool that finished since they were last reported: one Event each (Normal when it
/// succeeded, Warning when it failed) and the `(reason, result)` to count in `kubedrs_migrations_total`.
/// `reported` holds the UIDs (or `namespace/name`) already reported and is updated.
pub fn report_finished(ledger: &Ledger, reported: &mut BTreeSet<String>) -> (Vec<Action>, Vec<(String, String)>) {
    let mut actions = Vec::new();
    let mut counts = Vec::new();
    for r in &ledger.ours {
        let Some(result) = r.result_label() else { continue };
        if !reported.insert(record_id(r)) {
            continue;
        }
        counts.push((r.reason_label().to_string(), result.to_string()));
        let (kind, reason) = if result == "failed" {
            (EventKind::Warning, "MigrationFailed")
        } else {
            (EventKind::Normal, "MigrationSucceeded")
        };
        let note = format!(
            "migration {} from {} to {} ({}) {result}",
            r.name,
            r.source.as_deref().unwrap_or("?"),
            r.target.as_deref().unwrap_or("?"),
            r.reason_label()
        );
        actions.push(Action::Event(EventSpec::new(Target::vm(&r.vm), kind, reason, "Migrate", note)));
    }
    (actions, counts)
}

/// The identity of a migration in the `reported` set.
pub fn record_id(r: &MigrationRecord) -> String {
    r.uid.clone().unwrap_or_else(|| format!("{}/{}", r.namespace, r.name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::migrations::fixtures::vmim;
    use kubedrs_engine::{Automation, Move, NodeLoad, Placement, PoolSettings};

    fn mv(vm: &str, from: &str, to: &str, reason: Reason) -> Move {
        Move {
            vm: vm.into(),
            from: from.into(),
            to: to.into(),
            reason,
            goodness: 0.1,
            migration_secs: 10.0,
            recommend_only: false,
            deferred: false,
            why: format!("{} because", reason.as_str()),
            after: vec![],
            waits: String::new(),
        }
    }

    fn placement(vm: &str, node: &str, why: &str) -> Placement {
        Placement { vm: vm.into(), node: node.into(), why: why.into(), after: vec![], waits: String::new() }
    }

    fn snapshot(vms: &[(&str, Option<&str>)]) -> Snapshot {
        Snapshot {
            pool: PoolSettings { name: "prod".into(), ..PoolSettings::default() },
            nodes: ["n1", "n2", "n3", "n4"]
                .iter()
                .map(|n| kubedrs_engine::Node { name: n.to_string(), ..Default::default() })
                .collect(),
            vms: vms
                .iter()
                .map(|(v, n)| kubedrs_engine::Vm {
                    name: v.to_string(),
                    node: n.map(String::from),
                    ..Default::default()
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    struct Case {
        snapshot: Snapshot,
        plan: Plan,
        ledger: Ledger,
        pods: Vec<PendingPod>,
        gate: Gate,
        now: i64,
    }

    impl Case {
        fn new(vms: &[(&str, Option<&str>)], moves: Vec<Move>) -> Self {
            Case {
                snapshot: snapshot(vms),
                plan: Plan { moves, ..Plan::default() },
                ledger: Ledger::default(),
                pods: vec![],
                gate: Gate { automation: Automation::FullyAutomated, paused: false, dry_run: false, balance_due: true },
                now: 10_000,
            }
        }
        fn decide(&self) -> Decision {
            decide(&PassInput {
                pool: "prod",
                gate: self.gate,
                snapshot: &self.snapshot,
                plan: &self.plan,
                ledger: &self.ledger,
                pending_pods: &self.pods,
                keep_finished: 10,
                now: self.now,
            })
        }
    }

    fn created(d: &Decision) -> Vec<String> {
        d.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateMigration { namespace, vmi, to, .. } => Some(format!("{namespace}/{vmi}->{to}")),
                _ => None,
            })
            .collect()
    }

    fn binds(d: &Decision) -> Vec<String> {
        bind_names(&d.actions)
    }

    /// `pod->node` of every binding among `actions`.
    pub(super) fn bind_names(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Bind { pod, node, .. } => Some(format!("{pod}->{node}")),
                _ => None,
            })
            .collect()
    }

    fn two_moves() -> Case {
        Case::new(
            &[("ns/a", Some("n1")), ("ns/b", Some("n3"))],
            vec![mv("ns/a", "n1", "n2", Reason::Maintenance), mv("ns/b", "n3", "n4", Reason::Balance)],
        )
    }

    #[test]
    fn fully_automated_executes_every_move() {
        let d = two_moves().decide();
        assert_eq!(created(&d), vec!["ns/a->n2", "ns/b->n4"]);
        assert!(d.recommendations.is_empty());
    }

    #[test]
    fn partially_automated_executes_maintenance_and_recommends_balancing() {
        let mut c = two_moves();
        c.gate.automation = Automation::PartiallyAutomated;
        let d = c.decide();
        assert_eq!(created(&d), vec!["ns/a->n2"]);
        assert_eq!(d.recommendations.len(), 1);
        assert_eq!(d.recommendations[0].vm, "ns/b");
        assert_eq!(d.recommendations[0].reason, "balance");
    }

    #[test]
    fn manual_only_recommends_with_events_once_keyed() {
        let mut c = two_moves();
        c.gate.automation = Automation::Manual;
        let d = c.decide();
        assert!(created(&d).is_empty());
        assert_eq!(d.recommendations.len(), 2);
        let events: Vec<_> = d
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        assert!(events.iter().all(|e| e.reason == "Recommended" && e.once.is_some()));
    }

    #[test]
    fn a_vm_with_manual_automation_is_only_recommended() {
        let mut c = two_moves();
        c.plan.moves[1].recommend_only = true;
        let d = c.decide();
        assert_eq!(created(&d), vec!["ns/a->n2"]);
        assert!(d.recommendations[0].why.contains("kubedrs.io/automation is Manual"));
    }

    #[test]
    fn paused_pools_act_on_nothing() {
        let mut c = two_moves();
        c.gate.paused = true;
        c.snapshot.vms.push(kubedrs_engine::Vm { name: "ns/new".into(), ..Default::default() });
        c.plan.placements.push(placement("ns/new", "n2", "best"));
        c.pods.push(PendingPod {
            namespace: "ns".into(),
            name: "virt-launcher-new".into(),
            vm: "ns/new".into(),
            kind: PodKind::Launch,
        });
        let d = c.decide();
        assert!(d.actions.iter().all(|a| matches!(a, Action::Event(_))));
        assert_eq!(d.recommendations.len(), 3);
    }

    #[test]
    fn dry_run_writes_nothing_but_events() {
        let mut c = two_moves();
        c.gate.dry_run = true;
        c.ledger = Ledger::new(
            "prod",
            &[vmim("ns", "old", "prod", Reason::Balance).created(0).phase("Succeeded").ended(1).build()],
        );
        c.now = 10 * 24 * 3600;
        let d = c.decide();
        assert!(d.actions.iter().all(|a| matches!(a, Action::Event(_))), "{:?}", d.actions);
        assert!(d.recommendations.iter().all(|r| r.why.starts_with("dry run")));
    }

    #[test]
    fn passes_between_intervals_execute_only_mandatory_moves() {
        let mut c = two_moves();
        c.gate.balance_due = false;
        let d = c.decide();
        assert_eq!(created(&d), vec!["ns/a->n2"]);
        assert!(d.held.iter().any(|h| h.vm == "ns/b" && h.why.contains("once per interval")));
    }

    #[test]
    fn deferred_moves_wait_for_a_slot() {
        let mut c = two_moves();
        c.plan.moves[1].deferred = true;
        assert_eq!(created(&c.decide()), vec!["ns/a->n2"]);
    }

    #[test]
    fn placement_binds_pending_launcher_pods_and_reports_blocked_ones() {
        let mut c = Case::new(&[("ns/new", None), ("ns/big", None), ("ns/other", None)], vec![]);
        c.plan.placements.push(placement("ns/new", "n2", "lowest load"));
        c.plan.placements.push(placement("ns/other", "n2", "lowest load"));
        c.plan.blocked.push(kubedrs_engine::Blocked {
            vm: "ns/big".into(),
            node: None,
            wanted: Reason::Placement,
            reason: BlockedReason::NoCapacity,
            why: "no node has 64 GiB free".into(),
        });
        c.pods = vec![
            PendingPod {
                namespace: "ns".into(),
                name: "virt-launcher-new-abc".into(),
                vm: "ns/new".into(),
                kind: PodKind::Launch,
            },
            PendingPod {
                namespace: "ns".into(),
                name: "virt-launcher-big-abc".into(),
                vm: "ns/big".into(),
                kind: PodKind::Launch,
            },
        ];
        let d = c.decide();
        // ns/other has no kubedrs pod (the default scheduler places it): nothing to bind.
        assert_eq!(binds(&d), vec!["virt-launcher-new-abc->n2"]);
        assert!(d.actions.iter().any(|a| matches!(a,
            Action::Event(e) if e.reason == "FailedPlacement" && e.note.contains("NoCapacity") && e.target == Target::Pod { namespace: "ns".into(), name: "virt-launcher-big-abc".into() })));
        c.gate.automation = Automation::Manual;
        let d = c.decide();
        assert!(binds(&d).is_empty());
        assert_eq!(d.recommendations[0].reason, "placement");
    }

    #[test]
    fn migration_target_pods_go_to_the_migration_target_or_the_least_loaded_node() {
        let mut c = Case::new(&[("ns/a", Some("n1")), ("ns/b", Some("n1"))], vec![]);
        c.gate.automation = Automation::Manual;
        c.plan.loads = ["n1", "n2", "n3"]
            .iter()
            .zip([0.9, 0.5, 0.2])
            .map(|(n, l)| NodeLoad { node: n.to_string(), cpu: l, memory: l, combined: l, vms: 1, counted: true })
            .collect();
        c.pods = vec![
            PendingPod {
                namespace: "ns".into(),
                name: "virt-launcher-a-target".into(),
                vm: "ns/a".into(),
                kind: PodKind::MigrationTarget {
                    target: Some("n2".into()),
                    source: Some("n1".into()),
                    node_selector: BTreeMap::new(),
                },
            },
            PendingPod {
                namespace: "ns".into(),
                name: "virt-launcher-b-target".into(),
                vm: "ns/b".into(),
                kind: PodKind::MigrationTarget {
                    target: None,
                    source: Some("n1".into()),
                    node_selector: BTreeMap::new(),
                },
            },
        ];
        assert_eq!(binds(&c.decide()), vec!["virt-launcher-a-target->n2", "virt-launcher-b-target->n3"]);
    }

    #[test]
    fn garbage_collection_deletes_only_old_finished_migrations() {
        let mut c = Case::new(&[], vec![]);
        let mut all: Vec<_> = (0..12)
            .map(|i| {
                vmim("ns", "a", "prod", Reason::Balance)
                    .named(&format!("m{i:02}"))
                    .created(i)
                    .phase("Succeeded")
                    .ended(i)
                    .build()
            })
            .collect();
        all.push(vmim("ns", "b", "prod", Reason::Balance).named("running").created(0).phase("Running").build());
        c.ledger = Ledger::new("prod", &all);
        c.now = 2 * 24 * 3600;
        let deleted: Vec<_> = c
            .decide()
            .actions
            .into_iter()
            .filter_map(|a| match a {
                Action::DeleteMigration { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec!["m00", "m01"]);
    }

    #[test]
    fn finished_migrations_are_reported_once() {
        let ledger = Ledger::new(
            "prod",
            &[
                vmim("ns", "a", "prod", Reason::Balance).named("ok").phase("Succeeded").build(),
                vmim("ns", "b", "prod", Reason::Maintenance).named("ko").phase("Failed").build(),
                vmim("ns", "c", "prod", Reason::Balance).named("run").phase("Running").build(),
            ],
        );
        let mut seen = BTreeSet::new();
        let (events, counts) = report_finished(&ledger, &mut seen);
        // Oldest first, then by name.
        assert_eq!(counts, vec![("maintenance".into(), "failed".into()), ("balance".into(), "succeeded".into())]);
        assert!(
            matches!(&events[0], Action::Event(e) if e.kind == EventKind::Warning && e.reason == "MigrationFailed")
        );
        assert!(report_finished(&ledger, &mut seen).1.is_empty());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod whole_pass {
    //! Whole passes on fixtures (Kubernetes objects in, actions out, the real engine in between): the plan's
    //! order and the room on each node decide what is bound and migrated now.

    use std::sync::Arc;

    use super::*;
    use crate::fixtures::*;
    use crate::keys;
    use crate::kubevirt::VirtualMachineInstance;
    use crate::observe::{Cluster, DemandWindow};
    use crate::pass::{PassInput, PassOutput, PoolMemo, Settings, pass};
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::jiff::Timestamp;

    const NOW: i64 = 1_750_000_000;

    fn run(cluster: &Cluster) -> PassOutput {
        pass(&PassInput {
            pool: &cluster.pools[0],
            cluster,
            demand: &DemandWindow::default(),
            settings: Settings::default(),
            memo: &PoolMemo::default(),
            totals: &[],
            now: Timestamp::from_second(NOW).unwrap(),
        })
    }

    fn vm_on(name: &str, node: &str, memory: &str) -> (VirtualMachineInstance, Pod) {
        let v = vmi(name).on(node).cpus(1).memory(memory).label(keys::POOL, "prod").build();
        let p = launcher(&v).requests("1", memory).build();
        (v, p)
    }

    fn pool_of(nodes: Vec<k8s_openapi::api::core::v1::Node>, vms: Vec<(VirtualMachineInstance, Pod)>) -> Cluster {
        let (vmis, pods): (Vec<_>, Vec<_>) = vms.into_iter().unzip();
        Cluster {
            pools: vec![Arc::new(pool("prod").selects(keys::POOL, "prod").build())],
            nodes: nodes.into_iter().map(Arc::new).collect(),
            pods: pods.into_iter().map(|p| Arc::new(p.into())).collect(),
            vmis: vmis.into_iter().map(Arc::new).collect(),
            ..Cluster::default()
        }
    }

    fn binds(out: &PassOutput) -> Vec<String> {
        super::tests::bind_names(&out.actions)
    }

    fn held(out: &PassOutput) -> Vec<Held> {
        out.planned.as_ref().unwrap().decision.held.clone()
    }

    /// A pending VM in pool `prod`, with its launcher pod waiting for kubedrs.
    fn pending(name: &str, memory: &str) -> (VirtualMachineInstance, Pod) {
        let v = vmi(name).pending().cpus(1).memory(memory).label(keys::POOL, "prod").build();
        let mut p = launcher(&v).requests("1", memory).phase("Pending").build();
        p.spec.as_mut().unwrap().scheduler_name = Some(keys::SCHEDULER_NAME.into());
        (v, p)
    }

    #[test]
    fn a_new_vm_is_bound_only_after_the_vm_moved_out_of_its_way_has_left() {
        // n1 and n2 have 8 GiB free each: the 12 GiB VM fits only once a VM has left one of them.
        let n = |name: &str| node(name).cpu("16").memory("16Gi").in_pool("prod").build();
        let cluster = pool_of(
            vec![n("n1"), n("n2")],
            vec![
                vm_on("shop/small-1", "n1", "4Gi"),
                vm_on("shop/small-2", "n1", "4Gi"),
                vm_on("shop/other", "n2", "8Gi"),
                pending("shop/new", "12Gi"),
            ],
        );
        let out = run(&cluster);
        let plan = &out.planned.as_ref().unwrap().plan;
        assert_eq!(plan.placements.len(), 1, "{plan:#?}");
        let room = plan.moves.iter().find(|m| m.reason == Reason::Placement).expect("a move makes room");
        assert_eq!(plan.placements[0].after, vec![room.vm.clone()]);
        // The move starts now; the new VM's pod is not bound yet, and the pass says what it waits for.
        assert!(
            out.actions
                .iter()
                .any(|a| matches!(a, Action::CreateMigration { vmi, .. } if room.vm.ends_with(vmi.as_str()))),
            "{:?}",
            out.actions
        );
        assert!(binds(&out).is_empty(), "{:?}", out.actions);
        let why = format!("waits: after {} leaves {}", room.vm, room.from);
        assert!(held(&out).iter().any(|h| h.vm == "shop/new" && h.why == why), "{:?}", held(&out));
    }

    /// shop/a migrates n1 -> n2; its target pod waits for kubedrs to bind it.
    fn migrating(n2_taken: &str) -> Cluster {
        let n = |name: &str| node(name).cpu("16").memory("64Gi").in_pool("prod").build();
        let (a, a_pod) = vm_on("shop/a", "n1", "8Gi");
        let mut m = migration("shop/a", "prod").from("n1").to("n2").build();
        m.metadata.uid = Some("m-uid".into());
        let mut target = launcher(&a).requests("1", "8Gi").phase("Pending").build();
        target.metadata.name = Some("virt-launcher-a-target".into());
        target.spec.as_mut().unwrap().node_name = None;
        target.spec.as_mut().unwrap().scheduler_name = Some(keys::SCHEDULER_NAME.into());
        target.metadata.labels.get_or_insert_default().insert(keys::MIGRATION_JOB_LABEL.into(), "m-uid".into());
        // Another workload's pod on n2 (not a VM): it takes allocatable from the VMs.
        let other = pod("infra/cache").on("n2").requests("1", n2_taken).build();
        let mut c = pool_of(vec![n("n1"), n("n2")], vec![(a, a_pod)]);
        c.pods.push(Arc::new(target.into()));
        c.pods.push(Arc::new(other.into()));
        c.migrations.push(Arc::new(m));
        c
    }

    #[test]
    fn a_migration_target_pod_waits_while_its_node_has_no_room_for_its_requests() {
        let roomy = run(&migrating("8Gi"));
        assert_eq!(binds(&roomy), vec!["virt-launcher-a-target->n2"], "{:?}", roomy.actions);
        // 60 GiB of n2's 64 taken by another workload: the 8 GiB target pod would be refused by the kubelet.
        let full = run(&migrating("60Gi"));
        assert!(binds(&full).is_empty(), "{:?}", full.actions);
        assert!(
            held(&full).iter().any(|h| h.vm == "shop/a" && h.why.starts_with("waits for room: n2 has")),
            "{:?}",
            held(&full)
        );
        assert!(full.actions.iter().any(|a| matches!(a,
            Action::Event(e) if e.reason == "FailedPlacement" && e.note.contains("waits for room"))));
    }

    #[test]
    fn a_user_s_migration_target_goes_to_the_least_loaded_node_with_room() {
        // n3 holds no VM (the least loaded) but another workload takes nearly all of it.
        let n = |name: &str| node(name).cpu("16").memory("64Gi").in_pool("prod").build();
        let (a, a_pod) = vm_on("shop/a", "n1", "8Gi");
        let (b, b_pod) = vm_on("shop/b", "n2", "8Gi");
        let mut m = migration("shop/a", "prod").foreign().phase("Pending").build();
        m.metadata.uid = Some("m-uid".into());
        let mut target = launcher(&a).requests("1", "8Gi").phase("Pending").build();
        target.metadata.name = Some("virt-launcher-a-target".into());
        target.spec.as_mut().unwrap().node_name = None;
        target.spec.as_mut().unwrap().scheduler_name = Some(keys::SCHEDULER_NAME.into());
        target.metadata.labels.get_or_insert_default().insert(keys::MIGRATION_JOB_LABEL.into(), "m-uid".into());
        let mut c = pool_of(vec![n("n1"), n("n2"), n("n3")], vec![(a, a_pod), (b, b_pod)]);
        c.pods.push(Arc::new(target.into()));
        c.pods.push(Arc::new(pod("infra/cache").on("n3").requests("1", "60Gi").build().into()));
        c.migrations.push(Arc::new(m));
        let out = run(&c);
        assert_eq!(binds(&out), vec!["virt-launcher-a-target->n2"], "{:?}", out.actions);
    }
}
