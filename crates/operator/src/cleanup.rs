//! What kubedrs takes back when a HostPool is deleted.
//!
//! Every HostPool carries the finalizer `kubedrs.io/cleanup` (added on its first pass). When the pool is
//! deleted, the leader releases the nodes the pool alone selected before the object goes: it removes the
//! maintenance state (annotation and label) and message it wrote, and uncordons the nodes it cordoned itself
//! (`kubedrs.io/maintenance-cordoned`). A user's own cordon and the user's `kubedrs.io/maintenance` annotation
//! stay. The pool's finished migrations (its history) are deleted; unfinished ones finish under KubeVirt
//! (deleting one would abort it), and nothing new starts for the pool. Only when every patch and delete
//! succeeded is the finalizer removed; otherwise the cleanup is retried with the pass backoff.
//! A node another live pool also selects is left alone: it was never this pool's alone (see `observe`).

use crate::action::Action;
use crate::crd::HostPool;
use crate::maintenance::{NodeView, end_of_maintenance};
use crate::migrations::Ledger;
use crate::observe::{Cluster, node_view};

/// The finalizer kubedrs puts on every HostPool.
pub const FINALIZER: &str = "kubedrs.io/cleanup";

/// The nodes `pool` selects that no other live (not deleted) pool selects, and that carry kubedrs' marks.
pub fn nodes_to_release(cluster: &Cluster, pool: &HostPool) -> Vec<NodeView> {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let Ok(cfg) = pool.spec.validate(&name) else {
        // A spec that never validated never selected a node: nothing to take back.
        return Vec::new();
    };
    let others: Vec<_> = cluster
        .pools
        .iter()
        .filter(|p| p.metadata.name.as_deref() != Some(name.as_str()) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.spec.validate(p.metadata.name.as_deref().unwrap_or_default()).ok())
        .collect();
    let mut out: Vec<NodeView> = cluster
        .nodes
        .iter()
        .filter(|n| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            cfg.node_selector.matches(&labels) && !others.iter().any(|o| o.node_selector.matches(&labels))
        })
        .map(|n| node_view(n))
        .filter(NodeView::carries_marks)
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The node patches and Events that release `nodes` when `pool` is deleted. In dry run, only the Events
/// (saying what would be done): a dry-run operator never wrote the marks, so there is nothing to undo.
pub fn release(pool: &str, nodes: &[NodeView], dry_run: bool) -> Vec<Action> {
    let mut out = Vec::new();
    for n in nodes {
        let what = if dry_run {
            format!("dry run: HostPool {pool} deleted, would release the node")
        } else {
            format!("HostPool {pool} deleted")
        };
        let ((unschedulable, annotations), event) =
            end_of_maintenance(n, true, &what, "kubedrs no longer manages this node");
        out.push(Action::Event(event));
        if !dry_run {
            out.push(Action::PatchNode { node: n.name.clone(), unschedulable, annotations });
        }
    }
    out
}

/// Deletes of the pool's finished migrations (kubedrs' own, labelled with the pool). In dry run, none.
pub fn finished_migrations(cluster: &Cluster, pool: &str, dry_run: bool) -> Vec<Action> {
    if dry_run {
        return Vec::new();
    }
    let ledger = Ledger::new(pool, cluster.migrations.iter().map(AsRef::as_ref));
    ledger
        .ours
        .iter()
        .filter(|r| !r.is_unfinished())
        .map(|r| Action::DeleteMigration { namespace: r.namespace.clone(), name: r.name.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, NodeSpec};
    use kube::api::ObjectMeta;

    use super::*;
    use crate::crd::HostPoolSpec;
    use crate::keys;
    use crate::maintenance::NodePatch;

    fn pool(name: &str, pool_label: &str) -> Arc<HostPool> {
        let spec: HostPoolSpec = serde_json::from_value(serde_json::json!({
            "nodeSelector": {"matchLabels": {"kubedrs.io/pool": pool_label}}
        }))
        .unwrap();
        let mut p = HostPool::new(name, spec);
        p.metadata.finalizers = Some(vec![FINALIZER.into()]);
        Arc::new(p)
    }

    fn node(name: &str, pool_label: &str, cordoned: bool, annotations: &[(&str, &str)]) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("kubedrs.io/pool".to_string(), pool_label.to_string())])),
                annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: Some(NodeSpec { unschedulable: Some(cordoned), ..Default::default() }),
            ..Default::default()
        })
    }

    fn patches(actions: &[Action]) -> Vec<(String, NodePatch)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::PatchNode { node, unschedulable, annotations } => {
                    Some((node.clone(), (*unschedulable, annotations.clone())))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_deleted_pool_uncordons_only_what_kubedrs_cordoned_and_removes_its_marks() {
        let ours = [
            (keys::MAINTENANCE, "true"),
            (keys::CORDONED_BY_KUBEDRS, "true"),
            (keys::MAINTENANCE_STATE, "InMaintenance"),
            (keys::MAINTENANCE_MESSAGE, "no VM left on the node"),
        ];
        let cluster = Cluster {
            pools: vec![pool("a", "a")],
            nodes: vec![
                node("n1", "a", true, &ours),
                // Cordoned by a user, with kubedrs' state on it: the state goes, the cordon stays.
                node("n2", "a", true, &[(keys::MAINTENANCE_STATE, "InMaintenance")]),
                // Nothing of kubedrs on it: untouched.
                node("n3", "a", true, &[]),
                // Another pool's node.
                node("n4", "b", true, &ours),
            ],
            ..Default::default()
        };
        let nodes = nodes_to_release(&cluster, &cluster.pools[0]);
        assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        let actions = release("a", &nodes, false);
        let p = patches(&actions);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, "n1");
        assert_eq!(p[0].1.0, Some(false), "kubedrs' own cordon is lifted");
        assert_eq!(p[0].1.1.get(keys::CORDONED_BY_KUBEDRS), Some(&None));
        assert_eq!(p[0].1.1.get(keys::MAINTENANCE_STATE), Some(&None));
        assert_eq!(p[0].1.1.get(keys::MAINTENANCE_MESSAGE), Some(&None));
        assert!(!p[0].1.1.contains_key(keys::MAINTENANCE), "the user's request is the user's");
        assert_eq!(p[1].0, "n2");
        assert_eq!(p[1].1.0, None, "a user's cordon stays");
        assert_eq!(p[1].1.1.get(keys::MAINTENANCE_STATE), Some(&None));
        let events = actions.iter().filter(|a| matches!(a, Action::Event(_))).count();
        assert_eq!(events, 2, "one Event per released node");
    }

    #[test]
    fn a_node_another_live_pool_selects_is_left_alone_and_dry_run_writes_nothing() {
        let mut deleted = (*pool("a", "shared")).clone();
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let marks = [(keys::CORDONED_BY_KUBEDRS, "true"), (keys::MAINTENANCE_STATE, "Entering")];
        let cluster = Cluster {
            pools: vec![Arc::new(deleted.clone()), pool("b", "shared")],
            nodes: vec![node("n1", "shared", true, &marks)],
            ..Default::default()
        };
        assert!(nodes_to_release(&cluster, &deleted).is_empty());

        // Once the other pool is being deleted too, the node is released.
        let mut other = (*pool("b", "shared")).clone();
        other.metadata.deletion_timestamp = deleted.metadata.deletion_timestamp.clone();
        let cluster = Cluster { pools: vec![Arc::new(deleted.clone()), Arc::new(other)], ..cluster };
        let nodes = nodes_to_release(&cluster, &deleted);
        assert_eq!(nodes.len(), 1);
        let dry = release("a", &nodes, true);
        assert!(patches(&dry).is_empty(), "dry run patches nothing");
        assert_eq!(dry.len(), 1, "but says what it would do");
    }

    #[test]
    fn only_the_pools_finished_migrations_are_deleted() {
        use crate::migrations::fixtures::vmim;
        use kubedrs_engine::Reason;
        let cluster = Cluster {
            migrations: vec![
                Arc::new(vmim("ns", "done", "a", Reason::Balance).named("m1").phase("Succeeded").build()),
                Arc::new(vmim("ns", "failed", "a", Reason::Balance).named("m2").phase("Failed").build()),
                Arc::new(vmim("ns", "running", "a", Reason::Maintenance).named("m3").phase("Running").build()),
                Arc::new(vmim("ns", "other", "b", Reason::Balance).named("m4").phase("Succeeded").build()),
            ],
            ..Default::default()
        };
        let deleted: Vec<String> = finished_migrations(&cluster, "a", false)
            .into_iter()
            .filter_map(|a| match a {
                Action::DeleteMigration { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["m1", "m2"], "a running migration would be aborted by a delete");
        assert!(finished_migrations(&cluster, "a", true).is_empty());
    }
}
