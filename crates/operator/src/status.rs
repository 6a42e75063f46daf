//! **status**: the HostPool's status, computed purely from the pass, patched only when it changed and only
//! by the leader.
//!
//! Pipeline: observe -> plan -> actuate -> **status**. [`compute`] turns the outcome of a pass (an invalid
//! spec, a planned pool, or a failure) into a [`HostPoolStatus`], carrying each condition's
//! `lastTransitionTime` over while its status holds. [`worth_patching`] compares it with the status on the
//! server, ignoring the pass time and duration (which change every pass) unless the stored ones are older
//! than a heartbeat, so a quiet pool is not rewritten every interval. [`patch`] is one server-side apply of
//! the status subresource with the field manager `kubedrs`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::actuate::{Decision, blocked_word};
use crate::crd::{
    ActiveMigration, BlockedVm, CpuBaselineStatus, HostPool, HostPoolStatus, InvalidSpec, MigrationTotal,
    MigrationsStatus, NodeConflict, PinnedVmStatus, RuleViolation, STATUS_LIST_LIMIT, condition,
};
use crate::migrations::Ledger;
use kubedrs_engine::{NodeState, Plan, Snapshot};

/// Field manager of every server-side apply kubedrs makes.
pub const FIELD_MANAGER: &str = "kubedrs";

/// A status whose pass time is older than this is rewritten even when nothing else changed.
pub const HEARTBEAT_SECS: i64 = 600;

/// What a pass over a pool came to.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The spec failed [`crate::crd::HostPoolSpec::validate`]: the pool waits for a change.
    Invalid(&'a InvalidSpec),
    /// Observed, planned and actuated.
    Planned(Box<Planned<'a>>),
    /// Observation or planning failed (the snapshot was refused, an API error): retried with backoff.
    Failed(String),
}

#[derive(Debug)]
pub struct Planned<'a> {
    pub snapshot: &'a Snapshot,
    pub plan: &'a Plan,
    pub decision: &'a Decision,
    pub ledger: &'a Ledger,
    /// Nodes of this pool that another pool matches too.
    pub conflicts: &'a [NodeConflict],
    /// Finished migrations since the operator started.
    pub totals: &'a [MigrationTotal],
    pub paused: bool,
    pub dry_run: bool,
    /// Seconds.
    pub pass_duration: f64,
}

/// The status after a pass.
pub fn compute(
    previous: Option<&HostPoolStatus>,
    generation: Option<i64>,
    now: Timestamp,
    outcome: &Outcome<'_>,
) -> HostPoolStatus {
    let mut st = previous.cloned().unwrap_or_default();
    st.observed_generation = generation;
    let old = previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
    let cond = |type_: &str, ok: bool, reason: &str, message: String| {
        condition_at(old, type_, ok, reason, message, now, generation)
    };
    match outcome {
        Outcome::Invalid(e) => {
            let msg = e.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            st.conditions = vec![
                cond(
                    condition::READY,
                    false,
                    condition::REASON_INVALID_SPEC,
                    format!("waiting for a valid spec: {msg}"),
                ),
                cond(condition::VALID, false, condition::REASON_INVALID_SPEC, msg),
            ];
            st.recommendations.clear();
            st.recommendations_omitted = 0;
        }
        Outcome::Failed(msg) => {
            st.conditions = vec![
                cond(condition::READY, false, "PassFailed", msg.clone()),
                cond(condition::VALID, true, "Valid", "the spec is valid".into()),
            ];
            if let Some(p) = old.iter().find(|c| c.type_ == condition::PAUSED) {
                st.conditions.push(p.clone());
            }
        }
        Outcome::Planned(p) => {
            let (snap, plan, decision) = (p.snapshot, p.plan, p.decision);
            st.nodes = snap.nodes.len() as u32;
            st.vms = snap.vms.len() as u32;
            st.imbalance = Some(round(plan.imbalance_before));
            st.target_imbalance = Some(round(plan.target_imbalance));
            st.cpu_baseline =
                Some(CpuBaselineStatus { model: plan.baseline.model.clone(), message: plan.baseline.why.clone() });
            st.pinned_vms = plan
                .baseline
                .pinned
                .iter()
                .take(STATUS_LIST_LIMIT)
                .map(|v| PinnedVmStatus {
                    vm: v.vm.clone(),
                    model: v.model.clone(),
                    eligible_nodes: v.eligible_nodes as u32,
                })
                .collect();
            st.last_pass_time = Some(Time(now));
            st.last_pass_duration_seconds = Some((p.pass_duration * 1000.0).round() / 1000.0);
            st.migrations = MigrationsStatus {
                in_flight: p.ledger.active().count() as u32,
                active: p
                    .ledger
                    .active()
                    .take(STATUS_LIST_LIMIT)
                    .map(|r| ActiveMigration {
                        vm: r.vm.clone(),
                        migration: r.name.clone(),
                        from: r.source.clone().unwrap_or_default(),
                        to: r.target.clone().unwrap_or_default(),
                        reason: r.reason_label().into(),
                        phase: Some(r.phase.to_string()).filter(|s| !s.is_empty()),
                        started: r.created.and_then(|s| Timestamp::from_second(s).ok()).map(Time),
                    })
                    .collect(),
                totals: p.totals.to_vec(),
            };
            let recs = &decision.recommendations;
            st.recommendations = recs.iter().take(STATUS_LIST_LIMIT).cloned().collect();
            st.recommendations_omitted = recs.len().saturating_sub(STATUS_LIST_LIMIT) as u32;
            st.blocked = plan
                .blocked
                .iter()
                .take(STATUS_LIST_LIMIT)
                .map(|b| BlockedVm {
                    vm: b.vm.clone(),
                    node: b.node.clone(),
                    wanted: b.wanted.as_str().into(),
                    reason: blocked_word(&b.reason).into(),
                    message: b.why.clone(),
                })
                .collect();
            st.blocked_omitted = plan.blocked.len().saturating_sub(STATUS_LIST_LIMIT) as u32;
            st.rule_violations = plan
                .rule_notes
                .iter()
                .take(STATUS_LIST_LIMIT)
                .map(|r| RuleViolation { rule: r.rule.clone(), vms: r.vms.clone(), message: r.why.clone() })
                .collect();
            st.conflicting_nodes = p.conflicts.to_vec();
            st.balance_summary = Some(plan.balance_summary.clone()).filter(|s| !s.is_empty());

            let degraded = degraded_causes(snap, plan, decision, p.conflicts);
            let ready_msg = if p.dry_run {
                format!("dry run: nothing is executed; {}", plan.balance_summary)
            } else {
                plan.balance_summary.clone()
            };
            st.conditions = vec![
                cond(condition::READY, true, "Planned", ready_msg),
                cond(condition::VALID, true, "Valid", "the spec is valid".into()),
                match degraded.first() {
                    None => cond(condition::DEGRADED, false, "AsPlanned", "kubedrs can do what the plan needs".into()),
                    Some((reason, _)) => cond(
                        condition::DEGRADED,
                        true,
                        reason,
                        degraded.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
                    ),
                },
                if p.paused {
                    cond(condition::PAUSED, true, "Paused", "spec.paused is true: kubedrs only reports".into())
                } else {
                    cond(condition::PAUSED, false, "Active", "kubedrs acts on the pool".into())
                },
            ];
        }
    }
    st
}

/// Why a planned pool is `Degraded`, most pressing first: `(reason, message)`. The reasons are the
/// condition's (the first one) and the `Degraded` Events' (one per reason).
pub fn degraded_causes(
    snap: &Snapshot,
    plan: &Plan,
    decision: &Decision,
    conflicts: &[NodeConflict],
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let not_ready: Vec<&str> =
        snap.nodes.iter().filter(|n| n.state == NodeState::NotReady).map(|n| n.name.as_str()).collect();
    if !not_ready.is_empty() {
        let vms = snap.vms.iter().filter(|v| v.node.as_deref().is_some_and(|n| not_ready.contains(&n))).count();
        out.push((
            condition::REASON_NODES_NOT_READY,
            format!(
                "{} node(s) NotReady: {} ({vms} VM(s) on them; kubedrs cannot live-migrate from a node that is down)",
                not_ready.len(),
                not_ready.join(", ")
            ),
        ));
    }
    if !plan.blocked.is_empty() {
        out.push((condition::REASON_VMS_BLOCKED, format!("{} VM(s) blocked", plan.blocked.len())));
    }
    if !conflicts.is_empty() {
        let names: Vec<&str> = conflicts.iter().map(|c| c.node.as_str()).collect();
        out.push((
            condition::REASON_NODES_CLAIMED_TWICE,
            format!("node(s) matched by another pool, left alone: {}", names.join(", ")),
        ));
    }
    let backing_off = decision.held.iter().filter(|h| h.why.contains("failed migration")).count();
    if backing_off > 0 {
        out.push((condition::REASON_BACKING_OFF, format!("{backing_off} VM(s) backing off after failed migrations")));
    }
    if let (kubedrs_engine::CpuBaselinePolicy::Model(m), None) = (&snap.pool.cpu_baseline, &plan.baseline.model) {
        out.push((
            condition::REASON_BASELINE_UNUSABLE,
            format!("CPU baseline {m} is not usable: {}", plan.baseline.why.clone().unwrap_or_default()),
        ));
    }
    out
}

fn round(x: f64) -> f64 {
    if x.is_finite() { (x * 10_000.0).round() / 10_000.0 } else { 0.0 }
}

/// A condition, keeping the previous `lastTransitionTime` when the status did not change.
fn condition_at(
    old: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: Timestamp,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: crate::events::truncate(&message, 32_000),
        last_transition_time,
        observed_generation: generation,
    }
}

/// Is `new` worth a patch over `old` (the status on the server)? Pass time and duration alone are not,
/// unless the stored pass time is older than [`HEARTBEAT_SECS`].
pub fn worth_patching(old: Option<&HostPoolStatus>, new: &HostPoolStatus) -> bool {
    let Some(old) = old else { return true };
    let strip =
        |s: &HostPoolStatus| HostPoolStatus { last_pass_time: None, last_pass_duration_seconds: None, ..s.clone() };
    if strip(old) != strip(new) {
        return true;
    }
    match (&old.last_pass_time, &new.last_pass_time) {
        (Some(a), Some(b)) => b.0.as_second() - a.0.as_second() >= HEARTBEAT_SECS,
        (None, Some(_)) => true,
        _ => false,
    }
}

/// One server-side apply of `status` on the status subresource, field manager `kubedrs`.
pub async fn patch(api: &Api<HostPool>, name: &str, status: &HostPoolStatus) -> Result<(), kube::Error> {
    let body = serde_json::json!({
        "apiVersion": "kubedrs.io/v1alpha1",
        "kind": "HostPool",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crd::FieldError;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn planned<'a>(snap: &'a Snapshot, plan: &'a Plan, d: &'a Decision, l: &'a Ledger, paused: bool) -> Outcome<'a> {
        Outcome::Planned(Box::new(Planned {
            snapshot: snap,
            plan,
            decision: d,
            ledger: l,
            conflicts: &[],
            totals: &[],
            paused,
            dry_run: false,
            pass_duration: 0.0123,
        }))
    }

    fn get<'a>(s: &'a HostPoolStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn an_invalid_spec_names_the_field() {
        let e = InvalidSpec { errors: vec![FieldError::new("spec.rules[1].nodeSelector", "is required")] };
        let s = compute(None, Some(3), t(100), &Outcome::Invalid(&e));
        let v = get(&s, condition::VALID);
        assert_eq!((v.status.as_str(), v.reason.as_str()), ("False", "InvalidSpec"));
        assert!(v.message.contains("spec.rules[1].nodeSelector"));
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn transition_times_hold_while_the_status_holds_and_quiet_passes_are_not_patched() {
        let (snap, plan, d, l) = (Snapshot::default(), Plan::default(), Decision::default(), Ledger::default());
        let first = compute(None, Some(1), t(100), &planned(&snap, &plan, &d, &l, false));
        let second = compute(Some(&first), Some(1), t(400), &planned(&snap, &plan, &d, &l, false));
        assert_eq!(get(&second, condition::READY).last_transition_time, Time(t(100)));
        assert!(!worth_patching(Some(&first), &second));
        let later = compute(Some(&first), Some(1), t(100 + HEARTBEAT_SECS), &planned(&snap, &plan, &d, &l, false));
        assert!(worth_patching(Some(&first), &later), "heartbeat");
        let paused = compute(Some(&first), Some(2), t(500), &planned(&snap, &plan, &d, &l, true));
        assert!(worth_patching(Some(&first), &paused));
        let p = get(&paused, condition::PAUSED);
        assert_eq!((p.status.as_str(), p.last_transition_time.clone()), ("True", Time(t(500))));
    }

    #[test]
    fn conflicts_and_blocked_vms_degrade_the_pool() {
        let (snap, d, l) = (Snapshot::default(), Decision::default(), Ledger::default());
        let plan = Plan {
            blocked: vec![kubedrs_engine::Blocked {
                vm: "ns/a".into(),
                node: Some("n1".into()),
                wanted: kubedrs_engine::Reason::Maintenance,
                reason: kubedrs_engine::BlockedReason::NotLiveMigratable,
                why: "KubeVirt says it cannot be live-migrated".into(),
            }],
            ..Plan::default()
        };
        let conflicts = vec![NodeConflict { node: "n9".into(), pools: vec!["a".into(), "b".into()] }];
        let out = Outcome::Planned(Box::new(Planned {
            snapshot: &snap,
            plan: &plan,
            decision: &d,
            ledger: &l,
            conflicts: &conflicts,
            totals: &[],
            paused: false,
            dry_run: false,
            pass_duration: 0.0,
        }));
        let s = compute(None, None, t(0), &out);
        let deg = get(&s, condition::DEGRADED);
        assert_eq!(deg.status, "True");
        assert!(deg.message.contains("n9") && deg.message.contains("1 VM(s) blocked"));
        assert_eq!(s.blocked[0].reason, "NotLiveMigratable");
        assert_eq!(s.conflicting_nodes, conflicts);
    }
}
