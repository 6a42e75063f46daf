//! The thin executor: applies the [`Action`]s of a pass with the kube client.
//!
//! The last part of **actuate**: every decision was made by the pure steps; here each action becomes one
//! API call, with the field manager `kubedrs`. A failed call is logged, reported as an Event and counted, and
//! never stops the others: the next pass sees the cluster as it is and decides again. Node patches go first
//! (a node leaving maintenance is uncordoned before VMs are sent to it), then deletions, migrations and
//! bindings, then the Events; the calls of one kind go at once (up to [`IN_FLIGHT`]): a pass starts only
//! moves that wait for no other (the engine's order, `order.rs`), which may start together in any order.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};

use crate::actuate::{Action, EventKind, EventSpec, Target};
use crate::events::publish;
use crate::inventory::Inventory;
use crate::kubevirt::VirtualMachineInstanceMigration;
use crate::status::FIELD_MANAGER;

/// Annotation on the migrations kubedrs creates: why, in words (the plan's `why`).
pub const WHY: &str = "kubedrs.io/why";

/// What the executor did, for logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub migrations_created: usize,
    pub pods_bound: usize,
    pub nodes_patched: usize,
    pub migrations_deleted: usize,
    pub failures: usize,
    /// Migrations the API server refused to create (virt-api's webhook: a migration of the VMI in flight,
    /// not live-migratable...): `(vm, from, to)`. The pass backs these VMs off as failed migrations.
    pub refused: Vec<(String, String, String)>,
}

/// The migration object for a `CreateMigration` action.
pub fn migration_object(
    pool: &str,
    namespace: &str,
    vmi: &str,
    from: &str,
    to: &str,
    reason: kubedrs_engine::Reason,
    why: &str,
) -> VirtualMachineInstanceMigration {
    let mut m = VirtualMachineInstanceMigration::for_move(namespace, vmi, from, to, pool, reason);
    m.metadata.annotations.get_or_insert_default().insert(WHY.into(), crate::events::truncate(why, 4000));
    m
}

/// The Binding of `pod` to `node`.
pub fn binding(namespace: &str, pod: &str, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta { name: Some(pod.into()), namespace: Some(namespace.into()), ..ObjectMeta::default() },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..ObjectReference::default()
        },
    }
}

/// The merge patch of a `PatchNode` action. The maintenance state is written as an annotation and
/// mirrored in a label of the same key (labels show in `kubectl get nodes -L kubedrs.io/maintenance-state`).
pub fn node_patch(
    unschedulable: Option<bool>,
    annotations: &std::collections::BTreeMap<String, Option<String>>,
) -> serde_json::Value {
    let mut p = serde_json::json!({});
    if !annotations.is_empty() {
        p["metadata"] = serde_json::json!({ "annotations": annotations });
        if let Some(state) = annotations.get(crate::keys::MAINTENANCE_STATE) {
            p["metadata"]["labels"] = serde_json::json!({ crate::keys::MAINTENANCE_STATE: state });
        }
    }
    if let Some(u) = unschedulable {
        p["spec"] = serde_json::json!({ "unschedulable": u });
    }
    p
}

/// How many calls of one kind the executor has in flight at once: a pass's migrations (and, when a node
/// enters maintenance, its cordon) do not wait on one round trip after another (a migration's create goes
/// through virt-api's webhook: a second under load).
const IN_FLIGHT: usize = 8;

/// Applies `actions` (Events already filtered by the memo); `pool` names the pool in logs. The kinds go in
/// order (node patches, then deletions, migrations and bindings, then Events), the calls of one kind at
/// once, up to [`IN_FLIGHT`].
pub async fn execute(
    client: &Client,
    recorder: &Recorder,
    inv: &Inventory,
    pool: &str,
    actions: Vec<Action>,
) -> Report {
    let rank = |a: &Action| match a {
        Action::PatchNode { .. } => 0,
        Action::DeleteMigration { .. } => 1,
        Action::CreateMigration { .. } => 2,
        Action::Bind { .. } => 3,
        Action::Event(_) => 4,
    };
    let mut groups: Vec<Vec<Action>> = (0..5).map(|_| Vec::new()).collect();
    for a in actions {
        groups[rank(&a)].push(a);
    }
    let mut report = Report::default();
    let mut events: Vec<EventSpec> = Vec::new();
    for group in groups {
        let outcomes: Vec<Outcome> =
            futures::stream::iter(group).map(|a| apply(client, pool, a)).buffered(IN_FLIGHT).collect().await;
        for o in outcomes {
            match o {
                Outcome::NodePatched => report.nodes_patched += 1,
                Outcome::MigrationDeleted => report.migrations_deleted += 1,
                Outcome::MigrationCreated => report.migrations_created += 1,
                Outcome::PodBound => report.pods_bound += 1,
                Outcome::Nothing => {}
                Outcome::Failed(event) => {
                    report.failures += 1;
                    events.extend(event);
                }
                Outcome::Refused(vm, from, to, event) => {
                    report.failures += 1;
                    report.refused.push((vm, from, to));
                    events.push(event);
                }
                Outcome::Event(e) => events.push(e),
            }
        }
    }
    for e in &events {
        publish(recorder, e, uid_of(inv, &e.target)).await;
    }
    report
}

/// What one action came to.
enum Outcome {
    NodePatched,
    MigrationDeleted,
    MigrationCreated,
    PodBound,
    /// Nothing to do after all (the object was gone).
    Nothing,
    /// A failed call, with the Event that says so (if any).
    Failed(Option<EventSpec>),
    /// A migration the API server refused: `(vm, from, to)` and its Event.
    Refused(String, String, String, EventSpec),
    /// An Event to publish after the calls.
    Event(EventSpec),
}

/// One API call for one action.
async fn apply(client: &Client, pool: &str, a: Action) -> Outcome {
    let pp = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
    match a {
        Action::PatchNode { node, unschedulable, annotations } => {
            let api: Api<Node> = Api::all(client.clone());
            let body = node_patch(unschedulable, &annotations);
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
            match api.patch(&node, &params, &Patch::Merge(&body)).await {
                Ok(_) => {
                    tracing::info!(%pool, %node, ?unschedulable, "node patched");
                    Outcome::NodePatched
                }
                // A node deleted meanwhile has nothing left to patch.
                Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Nothing,
                Err(e) => {
                    tracing::warn!(%pool, %node, error = %e, "cannot patch node");
                    Outcome::Failed(None)
                }
            }
        }
        Action::DeleteMigration { namespace, name } => {
            let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(client.clone(), &namespace);
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => Outcome::MigrationDeleted,
                Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Nothing,
                Err(e) => {
                    tracing::warn!(%pool, %namespace, %name, error = %e, "cannot delete old migration");
                    Outcome::Failed(None)
                }
            }
        }
        Action::CreateMigration { namespace, vmi, from, to, reason, why } => {
            let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(client.clone(), &namespace);
            let obj = migration_object(pool, &namespace, &vmi, &from, &to, reason, &why);
            match api.create(&pp, &obj).await {
                Ok(created) => {
                    tracing::info!(
                        %pool, vm = %format!("{namespace}/{vmi}"), %from, %to, reason = reason.as_str(),
                        migration = created.metadata.name.as_deref().unwrap_or_default(), %why, "migration created"
                    );
                    Outcome::MigrationCreated
                }
                Err(e) => {
                    // Not a migration (none exists): an Event and the engine's backoff, no count.
                    tracing::warn!(%pool, vm = %format!("{namespace}/{vmi}"), error = %e, "migration refused");
                    let event = EventSpec::new(
                        Target::Vmi { namespace: namespace.clone(), name: vmi.clone() },
                        EventKind::Warning,
                        "MigrationRefused",
                        "Migrate",
                        format!("could not create the migration from {from} to {to}: {e}"),
                    );
                    Outcome::Refused(format!("{namespace}/{vmi}"), from, to, event)
                }
            }
        }
        Action::Bind { namespace, pod, node, vm, why } => {
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let body = binding(&namespace, &pod, &node);
            match api.create_subresource::<_, serde_json::Value>("binding", &pod, &pp, &body).await {
                Ok(_) => {
                    tracing::info!(%pool, %vm, %pod, %node, %why, "pod bound");
                    Outcome::PodBound
                }
                Err(e) => {
                    tracing::warn!(%pool, %vm, %pod, %node, error = %e, "cannot bind pod");
                    Outcome::Failed(Some(EventSpec::new(
                        Target::Pod { namespace: namespace.clone(), name: pod.clone() },
                        EventKind::Warning,
                        "FailedBinding",
                        "Bind",
                        format!("could not bind to {node}: {e}; retrying on the next pass"),
                    )))
                }
            }
        }
        Action::Event(e) => Outcome::Event(e),
    }
}

/// The UID of an Event's target, from the caches.
fn uid_of(inv: &Inventory, t: &Target) -> Option<String> {
    match t {
        Target::Vm { namespace, name } => inv.vms.get(&ObjectRef::new(name).within(namespace))?.metadata.uid.clone(),
        Target::Vmi { namespace, name } => inv.vmis.get(&ObjectRef::new(name).within(namespace))?.metadata.uid.clone(),
        Target::Pod { namespace, name } => inv.pods.get(&ObjectRef::new(name).within(namespace))?.metadata.uid.clone(),
        Target::Node(name) => inv.nodes.get(&ObjectRef::new(name))?.metadata.uid.clone(),
        Target::Pool(name) => inv.pools.get(&ObjectRef::new(name))?.metadata.uid.clone(),
        Target::Migration { namespace, name } => {
            inv.migrations.get(&ObjectRef::new(name).within(namespace))?.metadata.uid.clone()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kubedrs_engine::Reason;

    #[test]
    fn the_objects_sent_to_the_api_server() {
        let m = migration_object("prod", "shop", "web-1", "n1", "n2", Reason::Maintenance, "node n1 is in maintenance");
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["apiVersion"], "kubevirt.io/v1");
        assert_eq!(v["kind"], "VirtualMachineInstanceMigration");
        assert_eq!(v["metadata"]["generateName"], "kubedrs-web-1-");
        assert_eq!(v["metadata"]["labels"]["kubedrs.io/pool"], "prod");
        assert_eq!(v["metadata"]["labels"]["kubedrs.io/reason"], "maintenance");
        assert_eq!(v["metadata"]["annotations"]["kubedrs.io/why"], "node n1 is in maintenance");
        assert_eq!(v["spec"]["vmiName"], "web-1");
        assert_eq!(v["spec"]["addedNodeSelector"]["kubernetes.io/hostname"], "n2");

        let b = serde_json::to_value(binding("shop", "virt-launcher-web-1-abcde", "n3")).unwrap();
        assert_eq!(b["target"], serde_json::json!({"apiVersion": "v1", "kind": "Node", "name": "n3"}));

        let p = node_patch(Some(false), &[("kubedrs.io/maintenance-state".to_string(), None)].into());
        assert_eq!(
            p,
            serde_json::json!({
                "metadata": {
                    "annotations": {"kubedrs.io/maintenance-state": null},
                    "labels": {"kubedrs.io/maintenance-state": null}
                },
                "spec": {"unschedulable": false}
            })
        );
        let p = node_patch(None, &[("kubedrs.io/maintenance-state".to_string(), Some("Entering".to_string()))].into());
        assert_eq!(p["metadata"]["labels"]["kubedrs.io/maintenance-state"], "Entering", "the label mirrors the state");
    }
}
