//! One pass over one pool as a pure function: [`pass`] takes what the operator knows (the reflector
//! stores, the demand window, the pool's memo, the clock) and returns what to do (actions and Events),
//! the status to write, the updated memo and the numbers to record. The operator's reconcile fetches,
//! calls it, executes and patches; `kubedrs plan` calls it in dry-run mode, so a dry run shows exactly
//! what the operator would do.
//!
//! The steps, in order:
//!
//! 1. **observe** ([`crate::observe::observe`]): Kubernetes objects to the pool's engine snapshot, node
//!    views, and warnings about objects it could not read (Events on them);
//! 2. **validate**: an invalid spec becomes the `Valid=False` condition and the pool waits for a change;
//! 3. **in flight**: every unfinished migration of the pool's VMs (kubedrs', KubeVirt's, users'), plus those
//!    this operator created moments ago that the reflector does not show yet, goes into the snapshot, so
//!    that the engine, which owns every limit, never plans a slot that is taken; a node leaving maintenance
//!    is planned as cordoned;
//! 4. **plan** ([`kubedrs_engine::plan`]): moves, placements, what is blocked and why;
//! 5. **gate** ([`kubedrs_engine::Gate`]) and [`crate::actuate::decide`]: what is executed now, recommended
//!    or held; [`crate::maintenance::decide`]: cordons and the maintenance state of each node;
//! 6. **report**: finished migrations become Events and counts; Events go through the pool's memo so that
//!    lasting conditions are said once per change;
//! 7. **status**: computed from all of the above ([`crate::status::compute`]), patched only when worth it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::actuate::{self, Action, Decision, EventKind, EventSpec, PendingPod, Target};
use crate::crd::{HostPool, HostPoolStatus, MigrationTotal};
use crate::events::EventMemo;
use crate::maintenance::NodeView;
use crate::maintenance::{self, MaintenancePolicy};
use crate::migrations::{Ledger, MigrationRecord};
use crate::observe::{Cluster, DemandWindow, Warning, observe_pools, pending_pods, pool_node_views};
use crate::status::{self, Outcome, Planned};
use kubedrs_engine::{Backoff, CpuBaselinePolicy, Gate, InFlight, NodeState, PastMove, Plan, Snapshot};

/// Settings of the runtime that every pass applies (from `kubedrs run` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub dry_run: bool,
    /// Backoff after failed migrations (the engine applies it; `--failure-backoff` sets the first wait).
    pub backoff: Backoff,
    /// Finished migrations kept beyond the 24 h history.
    pub keep_finished: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { dry_run: false, backoff: Backoff::default(), keep_finished: 20 }
    }
}

/// What passes of one pool remember between them. All of it can be lost: a restart only repeats an Event,
/// restarts the balancing clock and forgets migrations created in the last [`RECENT_SECS`].
#[derive(Debug, Clone, Default)]
pub struct PoolMemo {
    /// Events already said (see [`EventMemo`]).
    pub events: EventMemo,
    /// Finished migrations already counted and reported; `None` before the pool's first pass, which reports
    /// nothing that finished before it (the previous leader did).
    pub reported: Option<BTreeSet<String>>,
    /// When balancing last ran (Unix seconds).
    pub last_balance: Option<i64>,
    /// Migrations created in the last [`RECENT_SECS`] that the reflector may not show yet.
    pub recent: Vec<MigrationRecord>,
    /// Failed passes in a row (the retry backoff).
    pub failures: u32,
    /// Migrations the API server refused to create in the last 24 h: the engine backs those VMs off as it
    /// does after failed migrations (no retry storm against a webhook that says no).
    pub refused: Vec<PastMove>,
    /// Node patches sent in the last [`NODE_WRITE_SECS`], by node: not sent again while the cache still
    /// shows the node at the version it had when they were sent (the cache has not caught up with them).
    pub written: BTreeMap<String, NodeWrite>,
}

/// A node patch kubedrs sent, and the node's `resourceVersion` in the cache at the time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeWrite {
    pub patch: String,
    pub resource_version: String,
    pub at: i64,
}

/// How long a node patch is not repeated while the cache does not show it (after which a patch the API
/// server never applied is retried).
pub const NODE_WRITE_SECS: i64 = 30;

/// Drops the node patches already sent while the cache still shows the node as it was when they were
/// sent: right after a reconnect, the cache lags and every pass would send the same patch again.
/// Remembers the ones kept.
pub fn skip_unseen_node_writes(
    actions: &mut Vec<Action>,
    written: &mut BTreeMap<String, NodeWrite>,
    cluster: &Cluster,
    now: i64,
) {
    let version = |node: &str| -> String {
        cluster
            .nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node))
            .and_then(|n| n.metadata.resource_version.clone())
            .unwrap_or_default()
    };
    written.retain(|_, w| now - w.at < NODE_WRITE_SECS);
    actions.retain(|a| {
        let Action::PatchNode { node, .. } = a else { return true };
        let patch = format!("{a:?}");
        let rv = version(node);
        if written.get(node).is_some_and(|w| w.patch == patch && w.resource_version == rv) {
            tracing::debug!(%node, "node patch already sent; the cache does not show it yet");
            return false;
        }
        written.insert(node.clone(), NodeWrite { patch, resource_version: rv, at: now });
        true
    });
}

impl PoolMemo {
    /// Records what the executor could not create: the VM is not held as migrating any more, and it backs
    /// off like a VM whose migration failed.
    pub fn record_refused(&mut self, refused: &[(String, String, String)], now: i64) {
        for (vm, from, to) in refused {
            self.recent.retain(|r| &r.vm != vm);
            let at = u64::try_from(now).unwrap_or(0);
            self.refused.push(PastMove { vm: vm.clone(), from: from.clone(), to: to.clone(), at, succeeded: false });
        }
    }
}

/// How long a created migration is remembered while the reflector catches up.
pub const RECENT_SECS: i64 = 60;

/// Everything one pass reads.
pub struct PassInput<'a> {
    pub pool: &'a HostPool,
    pub cluster: &'a Cluster,
    pub demand: &'a DemandWindow,
    pub settings: Settings,
    pub memo: &'a PoolMemo,
    /// Finished migrations of this pool counted so far (`kubedrs_migrations_total`).
    pub totals: &'a [MigrationTotal],
    pub now: Timestamp,
}

/// When to pass over the pool again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    After(Duration),
    /// Only when the pool changes (an invalid spec, a deleted pool).
    OnChange,
}

/// What a pass planned, for metrics and logs.
#[derive(Debug, Clone)]
pub struct PassSummary {
    pub snapshot: Snapshot,
    pub plan: Plan,
    pub decision: Decision,
    /// Migrations of the pool in flight (after the pass's own).
    pub in_flight: usize,
    pub balance_due: bool,
    /// Nodes of this pool that another pool matches too (left alone).
    pub conflicts: Vec<crate::crd::NodeConflict>,
}

/// Everything one pass decided.
#[derive(Debug, Clone)]
pub struct PassOutput {
    /// In order: node patches, migrations, binds, deletions, then the pool's Events (already through the
    /// memo).
    pub actions: Vec<Action>,
    /// Warnings about objects observe could not read: Events on those objects. Not deduplicated here: they
    /// are cluster-wide, every pool's pass sees them, the caller says each once.
    pub warnings: Vec<EventSpec>,
    /// The status to write, when it changed enough to be worth a patch.
    pub status: Option<HostPoolStatus>,
    pub memo: PoolMemo,
    /// Finished migrations to count: `(reason, result)`.
    pub counts: Vec<(String, String)>,
    /// The CPU model the admission webhook gives the pool's new VMs (`None`: none).
    pub baseline: Option<String>,
    pub planned: Option<PassSummary>,
    /// The engine refused the snapshot (a bug or a malformed object): the pass failed.
    pub refused: Option<kubedrs_engine::InvalidSnapshot>,
    /// The spec is invalid: what is wrong, naming the fields.
    pub invalid: Option<String>,
    pub requeue: Requeue,
}

/// One pass over `input.pool` (see the module docs).
pub fn pass(input: &PassInput<'_>) -> PassOutput {
    let name = input.pool.name_any();
    let now = input.now.as_second();
    let mut memo = input.memo.clone();
    let previous = input.pool.status.as_ref();
    let generation = input.pool.metadata.generation;
    let mut out = PassOutput {
        actions: Vec::new(),
        warnings: Vec::new(),
        status: None,
        memo: PoolMemo::default(),
        counts: Vec::new(),
        baseline: None,
        planned: None,
        refused: None,
        invalid: None,
        requeue: Requeue::OnChange,
    };

    // 1. Observe.
    let obs = observe_pools(input.cluster, input.demand, u64::try_from(now).unwrap_or(0), Some(&name));
    out.warnings = obs.warnings.iter().filter_map(warning_event).collect();
    let Some(po) = obs.pool(&name) else {
        // Deleted between the trigger and now.
        out.memo = memo;
        return out;
    };

    // 2. Validate.
    let config = match &po.config {
        Ok(c) => c.clone(),
        Err(invalid) => {
            let ev = EventSpec::new(
                Target::Pool(name.clone()),
                EventKind::Warning,
                "InvalidSpec",
                "Validate",
                invalid.to_string(),
            )
            .once(format!("invalid/{invalid}"));
            out.actions = memo.events.filter(&name, vec![ev]).into_iter().map(Action::Event).collect();
            let st = status::compute(previous, generation, input.now, &Outcome::Invalid(invalid));
            out.status = status::worth_patching(previous, &st).then_some(st);
            out.invalid = Some(invalid.to_string());
            out.memo = memo;
            return out;
        }
    };
    out.requeue = Requeue::After(config.interval);
    let Some(mut snapshot) = po.snapshot.clone() else {
        out.memo = memo;
        return out;
    };
    snapshot.pool.failure_backoff = input.settings.backoff;

    // 3. In flight, and refusals (failed attempts for the engine's backoff).
    let mut ledger = Ledger::new(&name, input.cluster.migrations.iter().map(AsRef::as_ref));
    merge_recent(&mut ledger, &mut memo.recent, now);
    add_recent_in_flight(&mut snapshot, &memo.recent);
    memo.refused.retain(|r| now - (r.at as i64) < 24 * 3600);
    snapshot.history.extend(memo.refused.iter().filter(|r| snapshot.vms.iter().any(|v| v.name == r.vm)).cloned());
    snapshot.history.sort_by(|a, b| (a.at, &a.vm).cmp(&(b.at, &b.vm)));
    let node_views = pool_node_views(input.cluster, &snapshot);
    lift_leaving_maintenance(&mut snapshot, &node_views);

    // 4. Plan.
    let plan = match kubedrs_engine::plan(&snapshot) {
        Ok(p) => p,
        Err(e) => {
            let failed = Outcome::Failed(format!("the engine refused the snapshot: {e}"));
            let st = status::compute(previous, generation, input.now, &failed);
            out.status = status::worth_patching(previous, &st).then_some(st);
            out.refused = Some(e);
            out.memo = memo;
            return out;
        }
    };

    // 5. Gate, decide, maintenance.
    let balance_due = memo.last_balance.is_none_or(|t| now + 1 >= t + config.interval.as_secs() as i64);
    let gate = Gate {
        automation: config.settings.automation,
        paused: config.paused,
        dry_run: input.settings.dry_run,
        balance_due,
    };
    let pending: Vec<PendingPod> = pending_pods(input.cluster, &snapshot);
    let decision = actuate::decide(&actuate::PassInput {
        pool: &name,
        gate,
        snapshot: &snapshot,
        plan: &plan,
        ledger: &ledger,
        pending_pods: &pending,
        keep_finished: input.settings.keep_finished,
        now,
    });
    let policy = MaintenancePolicy {
        honor_cordon: config.honor_cordon,
        automation: config.settings.automation,
        paused: config.paused,
        dry_run: input.settings.dry_run,
    };
    let mut actions = maintenance::decide(&node_views, policy, &snapshot, &plan, &ledger);
    actions.extend(decision.actions.iter().cloned());
    if balance_due {
        memo.last_balance = Some(now);
    }

    // 6. Report finished migrations; Events through the memo.
    let first = memo.reported.is_none();
    let (finished, counts) = actuate::report_finished(&ledger, memo.reported.get_or_insert_default());
    if !first {
        actions.extend(finished);
        out.counts = counts;
    }
    actions.extend(degraded_events(&name, &snapshot, &plan, &decision, &po.conflicting_nodes));
    skip_unseen_node_writes(&mut actions, &mut memo.written, input.cluster, now);
    let created = created_records(&name, &actions, now);
    let in_flight = ledger.active().count() + created.len();
    memo.recent.extend(created);
    let (events, mut rest): (Vec<Action>, Vec<Action>) =
        actions.into_iter().partition(|a| matches!(a, Action::Event(_)));
    let events = events
        .into_iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    rest.extend(memo.events.filter(&name, events).into_iter().map(Action::Event));
    out.actions = rest;

    // 7. Status.
    let mut totals = input.totals.to_vec();
    for (reason, result) in &out.counts {
        match totals.iter_mut().find(|t| &t.reason == reason && &t.result == result) {
            Some(t) => t.count += 1,
            None => totals.push(MigrationTotal { reason: reason.clone(), result: result.clone(), count: 1 }),
        }
    }
    let st = status::compute(
        previous,
        generation,
        input.now,
        &Outcome::Planned(Box::new(Planned {
            snapshot: &snapshot,
            plan: &plan,
            decision: &decision,
            ledger: &ledger,
            conflicts: &po.conflicting_nodes,
            totals: &totals,
            paused: config.paused,
            dry_run: input.settings.dry_run,
            pass_duration: 0.0,
        })),
    );
    out.status = status::worth_patching(previous, &st).then_some(st);
    out.baseline = match snapshot.pool.cpu_baseline {
        CpuBaselinePolicy::Off => None,
        _ => plan.baseline.model.clone(),
    };
    out.planned =
        Some(PassSummary { snapshot, plan, decision, in_flight, balance_due, conflicts: po.conflicting_nodes.clone() });
    out.memo = memo;
    out
}

/// The migrations created moments ago that observe could not see yet hold their VM and their slots in the
/// snapshot too: the engine must not plan them again nor give their slots away.
fn add_recent_in_flight(snapshot: &mut Snapshot, recent: &[MigrationRecord]) {
    for r in recent {
        let (Some(source), Some(target)) = (&r.source, &r.target) else { continue };
        let known = snapshot.in_flight.iter().any(|m| m.vm == r.vm);
        let in_pool = snapshot.vms.iter().any(|v| v.name == r.vm);
        if !known && in_pool {
            snapshot.in_flight.push(InFlight { vm: r.vm.clone(), source: source.clone(), target: target.clone() });
        }
    }
    snapshot.in_flight.sort_by(|a, b| (&a.vm, &a.source, &a.target).cmp(&(&b.vm, &b.source, &b.target)));
}

/// Adds the recently created migrations the reflector does not show yet to the ledger (as Pending), and
/// forgets the ones it shows or that are too old.
pub fn merge_recent(ledger: &mut Ledger, recent: &mut Vec<MigrationRecord>, now: i64) {
    recent.retain(|r| {
        let seen =
            ledger.ours.iter().any(|o| o.vm == r.vm && o.created.is_some_and(|c| c + 5 >= r.created.unwrap_or(0)));
        !seen && now - r.created.unwrap_or(0) < RECENT_SECS
    });
    for r in recent.iter() {
        ledger.migrating.insert(r.vm.clone());
        ledger.ours.push(r.clone());
    }
}

/// The records of the migrations a pass is about to create.
pub fn created_records(pool: &str, actions: &[Action], now: i64) -> Vec<MigrationRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateMigration { namespace, vmi, from, to, reason, .. } => Some(MigrationRecord {
                namespace: namespace.clone(),
                name: String::new(),
                uid: None,
                vm: format!("{namespace}/{vmi}"),
                pool: Some(pool.to_string()),
                reason: Some(*reason),
                source: Some(from.clone()),
                target: Some(to.clone()),
                phase: crate::kubevirt::MigrationPhase::Unset,
                created: Some(now),
                finished: None,
            }),
            _ => None,
        })
        .collect()
}

/// Failures that would otherwise be quiet, as Warning Events once each: every cause of `Degraded` on the
/// pool (reason `NodesNotReady`, `VmsBlocked`, ...), and `ClaimedByTwoPools` on each node another pool
/// also selects.
pub fn degraded_events(
    pool: &str,
    snapshot: &Snapshot,
    plan: &Plan,
    decision: &Decision,
    conflicts: &[crate::crd::NodeConflict],
) -> Vec<Action> {
    let mut out: Vec<EventSpec> = status::degraded_causes(snapshot, plan, decision, conflicts)
        .into_iter()
        .map(|(reason, message)| {
            EventSpec::new(Target::Pool(pool.to_string()), EventKind::Warning, reason, "Report", message)
                .once(format!("degraded/{reason}"))
        })
        .collect();
    for c in conflicts {
        let pools = c.pools.join(", ");
        out.push(
            EventSpec::new(
                Target::Node(c.node.clone()),
                EventKind::Warning,
                "ClaimedByTwoPools",
                "Observe",
                format!(
                    "HostPools {pools} all select this node: kubedrs leaves it out of every pool (no balancing, no \
                     maintenance) until only one selects it"
                ),
            )
            .once(format!("conflict/{}/{pools}", c.node)),
        );
    }
    out.into_iter().map(Action::Event).collect()
}

/// An observe warning as an Event on its object (once per change: the key holds the message).
pub fn warning_event(w: &Warning) -> Option<EventSpec> {
    let ns = w.namespace.clone().unwrap_or_default();
    let target = match w.kind {
        "VirtualMachine" => Target::Vm { namespace: ns, name: w.name.clone() },
        "VirtualMachineInstance" => Target::Vmi { namespace: ns, name: w.name.clone() },
        "Pod" => Target::Pod { namespace: ns, name: w.name.clone() },
        "Node" => Target::Node(w.name.clone()),
        "HostPool" => Target::Pool(w.name.clone()),
        "VirtualMachineInstanceMigration" => Target::Migration { namespace: ns, name: w.name.clone() },
        other => {
            tracing::warn!(kind = other, name = %w.name, message = %w.message, "observe warning");
            return None;
        }
    };
    let key = format!("warning/{}/{:?}/{}/{}/{}", w.kind, w.namespace, w.name, w.reason, w.message);
    Some(EventSpec::new(target, EventKind::Warning, w.reason, "Observe", w.message.clone()).once(key))
}

/// A node kubedrs cordoned for maintenance whose `kubedrs.io/maintenance` annotation is gone is about to be
/// uncordoned by this pass: plan it as cordoned (not evacuated, even when the pool honours cordons).
pub fn lift_leaving_maintenance(snapshot: &mut Snapshot, views: &[NodeView]) {
    for v in views.iter().filter(|v| v.cordoned_by_kubedrs && !v.annotated) {
        if let Some(n) = snapshot.nodes.iter_mut().find(|n| n.name == v.name)
            && n.state.in_maintenance()
        {
            n.state = NodeState::Cordoned;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Whole passes on fixtures: Kubernetes objects in, actions out, with the real engine in between.

    use std::sync::Arc;

    use super::*;
    use crate::actuate::PodKind;
    use crate::fixtures::*;
    use crate::keys;
    use crate::kubevirt::VirtualMachineInstance;
    use k8s_openapi::api::core::v1::Pod;

    const NOW: i64 = 1_750_000_000;

    fn kubedrs_pod(v: &VirtualMachineInstance) -> Pod {
        let mut p = launcher(v).phase("Pending").build();
        p.spec.as_mut().unwrap().scheduler_name = Some("kubedrs".into());
        p
    }

    fn run(cluster: &Cluster, memo: &PoolMemo, settings: Settings, now: i64) -> PassOutput {
        pass(&PassInput {
            pool: &cluster.pools[0],
            cluster,
            demand: &DemandWindow::default(),
            settings,
            memo,
            totals: &[],
            now: Timestamp::from_second(now).unwrap(),
        })
    }

    fn created(out: &PassOutput) -> Vec<String> {
        out.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateMigration { namespace, vmi, .. } => Some(format!("{namespace}/{vmi}")),
                _ => None,
            })
            .collect()
    }

    /// A pool whose node n1 is in maintenance with three VMs; n2 and n3 have room.
    fn evacuation(extra: impl FnOnce(&mut Cluster)) -> Cluster {
        let vmis: Vec<VirtualMachineInstance> =
            ["a", "b", "c"].iter().map(|v| vmi(&format!("shop/{v}")).on("n1").cpus(1).memory("1Gi").build()).collect();
        let mut c = Cluster {
            pools: vec![Arc::new(pool("prod").selects(keys::POOL, "prod").build())],
            nodes: vec![
                Arc::new(node("n1").cpu("16").memory("64Gi").in_pool("prod").maintenance().build()),
                Arc::new(node("n2").cpu("16").memory("64Gi").in_pool("prod").build()),
                Arc::new(node("n3").cpu("16").memory("64Gi").in_pool("prod").build()),
            ],
            pods: vmis.iter().map(|v| Arc::new(launcher(v).build().into())).collect(),
            vmis: vmis.into_iter().map(Arc::new).collect(),
            ..Cluster::default()
        };
        extra(&mut c);
        c
    }

    /// The caches keep VMIs and VMs without what kubedrs does not model: a pass over them decides the same.
    #[test]
    fn a_pass_over_slimmed_vmis_and_vms_decides_the_same() {
        let junk = |o: &mut crate::kubevirt::Other, key: &str| {
            o.insert(
                key.into(),
                serde_json::Value::Array(vec![serde_json::json!({"name": "rootdisk", "disk": {"bus": "virtio"}}); 8]),
            );
        };
        let full = evacuation(|c| {
            let mut vmis: Vec<VirtualMachineInstance> = c.vmis.iter().map(|v| (**v).clone()).collect();
            vmis.push(vmi("shop/new").pending().cpus(2).memory("2Gi").label(keys::POOL, "prod").build());
            for v in &mut vmis {
                junk(&mut v.spec.other, "volumes");
                junk(&mut v.spec.domain.other, "devices");
                let status = v.status.get_or_insert_with(Default::default);
                junk(&mut status.other, "interfaces");
            }
            c.pods.push(Arc::new(kubedrs_pod(&vmis[3]).into()));
            let mut shop_vm = vm("shop/a").label("app", "web").build();
            junk(&mut shop_vm.spec.other, "dataVolumeTemplates");
            c.vms = vec![Arc::new(shop_vm)];
            c.vmis = vmis.into_iter().map(Arc::new).collect();
        });
        let mut slim = full.clone();
        for v in &mut slim.vmis {
            Arc::make_mut(v).drop_unmodelled();
        }
        for v in &mut slim.vms {
            Arc::make_mut(v).drop_unmodelled();
        }
        let size = |c: &Cluster| {
            let vmis: usize = c.vmis.iter().map(|v| serde_json::to_vec(&**v).unwrap().len()).sum();
            let vms: usize = c.vms.iter().map(|v| serde_json::to_vec(&**v).unwrap().len()).sum();
            vmis + vms
        };
        assert!(size(&slim) * 3 < size(&full), "{} bytes of {}", size(&slim), size(&full));

        let (a, b) = (
            run(&full, &PoolMemo::default(), Settings::default(), NOW),
            run(&slim, &PoolMemo::default(), Settings::default(), NOW),
        );
        assert_eq!(created(&a).len(), 2, "{:?}", a.actions);
        assert!(a.actions.iter().any(|x| matches!(x, Action::Bind { .. })), "{:?}", a.actions);
        assert_eq!(a.actions, b.actions);
        assert_eq!(a.status, b.status);
        assert_eq!(a.baseline, b.baseline);
    }

    #[test]
    fn a_pending_vm_in_a_pool_is_placed_by_binding_its_launcher_pod() {
        let mut new = vmi("shop/new").pending().cpus(2).memory("2Gi").label(keys::POOL, "prod").build();
        new.spec.scheduler_name = Some("kubedrs".into());
        let cluster = Cluster {
            pools: vec![Arc::new(pool("prod").selects(keys::POOL, "prod").build())],
            nodes: vec![
                Arc::new(node("n1").cpu("16").memory("64Gi").in_pool("prod").build()),
                Arc::new(node("n2").cpu("16").memory("64Gi").in_pool("prod").build()),
            ],
            pods: vec![Arc::new(kubedrs_pod(&new).into())],
            vmis: vec![Arc::new(new)],
            ..Cluster::default()
        };
        let out = run(&cluster, &PoolMemo::default(), Settings::default(), NOW);
        assert!(
            out.actions.iter().any(|a| matches!(a, Action::Bind { pod, .. } if pod == "virt-launcher-new-abcde")),
            "{:?}",
            out.actions
        );
        assert!(out.status.is_some(), "the first pass writes a status");
    }

    #[test]
    fn a_migration_target_pod_goes_where_its_migration_says() {
        let v = vmi("shop/a").on("n1").cpus(1).memory("1Gi").label(keys::POOL, "prod").build();
        let mut m = migration("shop/a", "prod").from("n1").to("n2").build();
        m.metadata.uid = Some("m-uid".into());
        let mut target = kubedrs_pod(&v);
        target.metadata.name = Some("virt-launcher-a-target".into());
        target.spec.as_mut().unwrap().node_name = None;
        target.metadata.labels.get_or_insert_default().insert(keys::MIGRATION_JOB_LABEL.into(), "m-uid".into());
        let cluster = Cluster {
            pools: vec![Arc::new(pool("prod").selects(keys::POOL, "prod").build())],
            nodes: vec![
                Arc::new(node("n1").cpu("16").memory("64Gi").in_pool("prod").build()),
                Arc::new(node("n2").cpu("16").memory("64Gi").in_pool("prod").build()),
            ],
            pods: vec![Arc::new(launcher(&v).build().into()), Arc::new(target.into())],
            vmis: vec![Arc::new(v)],
            migrations: vec![Arc::new(m)],
            ..Cluster::default()
        };
        let snap = crate::observe::observe(&cluster, &DemandWindow::default(), NOW as u64)
            .pool("prod")
            .unwrap()
            .snapshot
            .clone()
            .unwrap();
        let pending = pending_pods(&cluster, &snap);
        assert_eq!(pending.len(), 1);
        assert!(
            matches!(&pending[0].kind, PodKind::MigrationTarget { target: Some(t), source: Some(s), .. } if t == "n2" && s == "n1")
        );
        let out = run(&cluster, &PoolMemo::default(), Settings::default(), NOW);
        assert!(
            out.actions.iter().any(|a| matches!(a, Action::Bind { node, .. } if node == "n2")),
            "{:?}",
            out.actions
        );
    }

    /// The engine owns the limits, so it must see the migrations created a moment ago that the reflector does
    /// not show yet: a second pass right after the first creates nothing more (perNodeOutbound 2 is taken by
    /// the first pass's two migrations, and those two VMs are not migrated twice).
    #[test]
    fn migrations_created_moments_ago_hold_their_vms_and_slots_in_the_next_pass() {
        let cluster = evacuation(|_| {});
        let first = run(&cluster, &PoolMemo::default(), Settings::default(), NOW);
        assert_eq!(created(&first), vec!["shop/a", "shop/b"], "{:?}", first.actions);
        assert_eq!(first.memo.recent.len(), 2);
        let second = run(&cluster, &first.memo, Settings::default(), NOW + 2);
        assert!(created(&second).is_empty(), "{:?}", second.actions);
        let plan = &second.planned.as_ref().unwrap().plan;
        assert!(plan.moves.iter().all(|m| m.vm == "shop/c" && m.deferred), "{:?}", plan.moves);
        // Never shown (the create was refused): forgotten after RECENT_SECS, then planned again.
        let later = run(&cluster, &second.memo, Settings::default(), NOW + RECENT_SECS + 1);
        assert_eq!(created(&later), vec!["shop/a", "shop/b"]);
    }

    #[test]
    fn a_migration_in_flight_is_never_duplicated_whoever_created_it() {
        // Adopted after a restart (kubedrs' own, labelled) and a user's (unlabelled): both hold their VM.
        let cluster = evacuation(|c| {
            c.migrations = vec![
                Arc::new(migration("shop/a", "prod").from("n1").to("n2").phase("Scheduling").build()),
                Arc::new(migration("shop/b", "prod").foreign().phase("Pending").build()),
            ];
        });
        let out = run(&cluster, &PoolMemo::default(), Settings::default(), NOW);
        assert_eq!(created(&out), Vec::<String>::new(), "n1's two outbound slots are taken: {:?}", out.actions);
        let plan = &out.planned.as_ref().unwrap().plan;
        assert!(plan.moves.iter().all(|m| m.vm == "shop/c" && m.deferred), "{:?}", plan.moves);
        // Both are on their way out, neither is blocked (shop/b once read "not live-migratable").
        assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
        let snap = &out.planned.as_ref().unwrap().snapshot;
        assert_eq!(snap.in_flight.len(), 2, "{:?}", snap.in_flight);
    }

    #[test]
    fn a_failed_migration_backs_the_vm_off_for_the_flag_s_wait_then_retries() {
        let failed_at = NOW as u64 - 10;
        let cluster = evacuation(|c| {
            c.migrations = vec![Arc::new(migration("shop/a", "prod").from("n1").to("n2").failed_at(failed_at).build())];
        });
        let settings = Settings { backoff: Backoff { base_secs: 60, max_secs: 3600 }, ..Settings::default() };
        let out = run(&cluster, &PoolMemo::default(), settings, NOW);
        assert_eq!(created(&out), vec!["shop/b", "shop/c"]);
        assert!(
            out.actions
                .iter()
                .any(|a| matches!(a, Action::Event(e) if e.reason == "BackingOff" && e.note.contains("50s"))),
            "{:?}",
            out.actions
        );
        // After the flag's 60 s (not the engine's default 5 minutes) it is tried again.
        let later =
            run(&evacuation(|c| c.migrations = cluster.migrations.clone()), &PoolMemo::default(), settings, NOW + 51);
        assert_eq!(created(&later), vec!["shop/a", "shop/b"]);
    }

    /// virt-api refused the create (say, a migration of the VMI it knows of is in flight): the VM is not held
    /// for a minute as if migrating, and it is not asked again at every pass but after the backoff.
    #[test]
    fn a_refused_migration_backs_the_vm_off_instead_of_being_retried_every_pass() {
        let cluster = evacuation(|_| {});
        let first = run(&cluster, &PoolMemo::default(), Settings::default(), NOW);
        assert_eq!(created(&first), vec!["shop/a", "shop/b"]);
        let mut memo = first.memo;
        memo.record_refused(&[("shop/a".into(), "n1".into(), "n2".into())], NOW);
        assert!(memo.recent.iter().all(|r| r.vm != "shop/a"), "a refused VM is not held as migrating");
        let second = run(&cluster, &memo, Settings::default(), NOW + 2);
        assert_eq!(created(&second), vec!["shop/c"], "a's slot is free again, a itself waits: {:?}", second.actions);
        let plan = &second.planned.as_ref().unwrap().plan;
        assert!(
            plan.blocked.iter().any(|b| b.vm == "shop/a"
                && matches!(b.reason, kubedrs_engine::BlockedReason::BackingOff { failures: 1, .. }))
        );
        let later = run(&cluster, &second.memo, Settings::default(), NOW + 301);
        assert!(created(&later).contains(&"shop/a".to_string()), "{:?}", later.actions);
    }

    #[test]
    fn a_dry_run_writes_nothing_and_says_what_it_would_do() {
        let cluster = evacuation(|_| {});
        let out = run(&cluster, &PoolMemo::default(), Settings { dry_run: true, ..Settings::default() }, NOW);
        assert!(out.actions.iter().all(|a| matches!(a, Action::Event(_))), "{:?}", out.actions);
        let p = out.planned.unwrap();
        assert_eq!(p.decision.recommendations.len(), 2, "two slots: {:?}", p.decision);
        assert!(p.decision.held.iter().any(|h| h.vm == "shop/c" && h.why.contains("slot")));
    }

    #[test]
    fn a_node_leaving_maintenance_is_not_evacuated() {
        let mut snap = Snapshot {
            nodes: vec![kubedrs_engine::Node {
                name: "n1".into(),
                state: NodeState::EnteringMaintenance,
                ..Default::default()
            }],
            ..Snapshot::default()
        };
        let views =
            vec![NodeView { name: "n1".into(), unschedulable: true, cordoned_by_kubedrs: true, ..NodeView::default() }];
        lift_leaving_maintenance(&mut snap, &views);
        assert_eq!(snap.nodes[0].state, NodeState::Cordoned);
    }

    #[test]
    fn warnings_become_events_on_their_object() {
        let w = Warning {
            kind: "VirtualMachine",
            namespace: Some("shop".into()),
            name: "web-1".into(),
            reason: "InvalidAnnotation",
            message: "kubedrs.io/cpu-shares: \"lots\" is not a shares value".into(),
        };
        let e = warning_event(&w).unwrap();
        assert_eq!(e.target, Target::Vm { namespace: "shop".into(), name: "web-1".into() });
        assert_eq!(e.kind, EventKind::Warning);
        assert!(e.once.is_some());
    }

    fn events(out: &PassOutput) -> Vec<(String, String)> {
        out.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some((format!("{:?}", e.target), e.reason.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn not_ready_nodes_and_a_node_two_pools_claim_are_said_in_the_conditions_and_events() {
        let vmis: Vec<VirtualMachineInstance> =
            ["a", "b"].iter().map(|v| vmi(&format!("shop/{v}")).on("n1").cpus(1).memory("1Gi").build()).collect();
        let cluster = Cluster {
            pools: vec![
                Arc::new(pool("prod").selects(keys::POOL, "prod").build()),
                Arc::new(pool("ssd").selects("disk", "ssd").build()),
            ],
            nodes: vec![
                Arc::new(node("n1").cpu("16").memory("64Gi").in_pool("prod").not_ready().build()),
                Arc::new(node("n2").cpu("16").memory("64Gi").in_pool("prod").build()),
                Arc::new(node("n3").cpu("16").memory("64Gi").in_pool("prod").label("disk", "ssd").build()),
            ],
            pods: vmis.iter().map(|v| Arc::new(launcher(v).build().into())).collect(),
            vmis: vmis.into_iter().map(Arc::new).collect(),
            ..Cluster::default()
        };
        let out = run(&cluster, &PoolMemo::default(), Settings::default(), NOW);
        let st = out.status.clone().unwrap();
        let deg = st.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
        assert_eq!((deg.status.as_str(), deg.reason.as_str()), ("True", "NodesNotReady"));
        assert!(deg.message.contains("1 node(s) NotReady: n1 (2 VM(s)"), "{}", deg.message);
        assert!(deg.message.contains("matched by another pool, left alone: n3"), "{}", deg.message);
        let ev = events(&out);
        for want in [
            ("Pool(\"prod\")", "NodesNotReady"),
            ("Pool(\"prod\")", "NodesClaimedByTwoPools"),
            ("Node(\"n3\")", "ClaimedByTwoPools"),
        ] {
            assert!(ev.iter().any(|(t, r)| t == want.0 && r == want.1), "{want:?} not in {ev:?}");
        }
        // Said once: the next pass with the same causes says nothing more.
        let again = run(&cluster, &out.memo, Settings::default(), NOW + 10);
        assert!(events(&again).iter().all(|(_, r)| !r.contains("NotReady") && !r.contains("Claimed")));
    }

    #[test]
    fn a_node_patch_is_not_repeated_until_the_cache_shows_a_new_version() {
        let mut n = node("n1").build();
        n.metadata.resource_version = Some("10".into());
        let mut cluster = Cluster { nodes: vec![Arc::new(n)], ..Cluster::default() };
        let patch =
            || vec![Action::PatchNode { node: "n1".into(), unschedulable: Some(true), annotations: BTreeMap::new() }];
        let mut written = BTreeMap::new();
        let mut a = patch();
        skip_unseen_node_writes(&mut a, &mut written, &cluster, 100);
        assert_eq!(a.len(), 1, "the first time it is sent");
        let mut a = patch();
        skip_unseen_node_writes(&mut a, &mut written, &cluster, 105);
        assert!(a.is_empty(), "the cache still shows the version it was sent at");
        Arc::make_mut(&mut cluster.nodes[0]).metadata.resource_version = Some("11".into());
        let mut a = patch();
        skip_unseen_node_writes(&mut a, &mut written, &cluster, 106);
        assert_eq!(a.len(), 1, "a newer version still wants it (someone undid it): sent again");
        let mut a = patch();
        skip_unseen_node_writes(&mut a, &mut written, &cluster, 106 + NODE_WRITE_SECS);
        assert_eq!(a.len(), 1, "a patch the API server never applied is retried after NODE_WRITE_SECS");
    }
}
