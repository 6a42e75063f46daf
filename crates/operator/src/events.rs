//! Events for every decision, with its reason: the words behind each move, placement, recommendation,
//! maintenance step and bad input.
//!
//! Part of **actuate** and **status**: [`crate::actuate`] and the other pure steps produce
//! [`EventSpec`]s; [`EventMemo`] drops the ones that only repeat what the last pass already said (an
//! `EventSpec` with a `once` key is emitted when the key first appears, and again only after it has
//! disappeared for a pass); [`publish`] sends the rest through kube's [`Recorder`] (which itself folds
//! repeats into an event series). Cluster-scoped objects (nodes, HostPools) get their Events in `default`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

use crate::actuate::{EventKind, EventSpec, Target};

/// Remembers, per scope (a pool, or a pool's warnings), the `once` keys of the last pass.
#[derive(Debug, Clone, Default)]
pub struct EventMemo {
    last: BTreeMap<String, BTreeSet<String>>,
}

impl EventMemo {
    /// Keeps the events to publish now: every event without a `once` key, and those whose key was not
    /// seen in the previous pass of `scope`. Remembers this pass's keys.
    pub fn filter(&mut self, scope: &str, events: Vec<EventSpec>) -> Vec<EventSpec> {
        let before = self.last.remove(scope).unwrap_or_default();
        let mut now = BTreeSet::new();
        let mut out = Vec::new();
        for e in events {
            match &e.once {
                Some(k) => {
                    if now.insert(k.clone()) && !before.contains(k) {
                        out.push(e);
                    }
                }
                None => out.push(e),
            }
        }
        self.last.insert(scope.to_string(), now);
        out
    }

    /// Forgets a scope (a deleted pool).
    pub fn forget(&mut self, scope: &str) {
        self.last.remove(scope);
    }
}

/// The object reference of an Event target. `uid` is filled when the caller knows it (it makes
/// `kubectl describe` list the event for that very object).
pub fn reference(target: &Target, uid: Option<String>) -> ObjectReference {
    let (api_version, kind, namespace, name) = match target {
        Target::Vm { namespace, name } => ("kubevirt.io/v1", "VirtualMachine", Some(namespace), name),
        Target::Vmi { namespace, name } => ("kubevirt.io/v1", "VirtualMachineInstance", Some(namespace), name),
        Target::Pod { namespace, name } => ("v1", "Pod", Some(namespace), name),
        Target::Node(name) => ("v1", "Node", None, name),
        Target::Pool(name) => ("kubedrs.io/v1alpha1", "HostPool", None, name),
        Target::Migration { namespace, name } => {
            ("kubevirt.io/v1", "VirtualMachineInstanceMigration", Some(namespace), name)
        }
    };
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        namespace: namespace.cloned(),
        name: Some(name.clone()),
        uid,
        ..ObjectReference::default()
    }
}

/// Publishes one Event; a failure is logged, never fatal (Events are best effort).
pub async fn publish(recorder: &Recorder, spec: &EventSpec, uid: Option<String>) {
    let ev = Event {
        type_: match spec.kind {
            EventKind::Normal => EventType::Normal,
            EventKind::Warning => EventType::Warning,
        },
        reason: spec.reason.clone(),
        note: Some(truncate(&spec.note, 1000)),
        action: spec.action.clone(),
        secondary: None,
    };
    let r = reference(&spec.target, uid);
    if let Err(e) = recorder.publish(&ev, &r).await {
        tracing::warn!(error = %e, reason = %spec.reason, target = ?spec.target, "could not publish event");
    }
}

/// At most `max` bytes, cut on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: Option<&str>) -> EventSpec {
        let e = EventSpec::new(Target::Node("n1".into()), EventKind::Normal, "R", "A", "note");
        match key {
            Some(k) => e.once(k),
            None => e,
        }
    }

    #[test]
    fn once_events_repeat_only_after_they_went_away() {
        let mut m = EventMemo::default();
        assert_eq!(m.filter("p", vec![ev(Some("a")), ev(None), ev(Some("a"))]).len(), 2);
        assert_eq!(m.filter("p", vec![ev(Some("a")), ev(None)]).len(), 1, "a is not news");
        assert_eq!(m.filter("other", vec![ev(Some("a"))]).len(), 1, "scopes are separate");
        assert_eq!(m.filter("p", vec![]).len(), 0);
        assert_eq!(m.filter("p", vec![ev(Some("a"))]).len(), 1, "a came back");
    }

    #[test]
    fn references_name_the_kind() {
        let r = reference(&Target::Vmi { namespace: "ns".into(), name: "a".into() }, Some("u".into()));
        assert_eq!(r.kind.as_deref(), Some("VirtualMachineInstance"));
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(reference(&Target::Node("n".into()), None).namespace, None);
        assert_eq!(truncate("ééé", 5), "é...");
    }
}
