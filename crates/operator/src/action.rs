//! The action vocabulary every step after the plan speaks: what to change in the cluster ([`Action`]), what
//! to say about it ([`EventSpec`] on a [`Target`]), and the pods kubedrs schedules ([`PendingPod`]). Made by
//! [`crate::actuate`], [`crate::maintenance`] and [`crate::pass`]; applied by [`crate::execute`].

use std::collections::BTreeMap;

use kubedrs_engine::Reason;

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A VirtualMachine.
    Vm {
        namespace: String,
        name: String,
    },
    /// A VirtualMachineInstance.
    Vmi {
        namespace: String,
        name: String,
    },
    Pod {
        namespace: String,
        name: String,
    },
    Node(String),
    Pool(String),
    Migration {
        namespace: String,
        name: String,
    },
}

impl Target {
    /// The VMI of a snapshot VM name (`namespace/name`).
    pub fn vm(key: &str) -> Target {
        let (namespace, name) = split_key(key);
        Target::Vmi { namespace: namespace.into(), name: name.into() }
    }
}

/// `namespace/name` -> (`namespace`, `name`); a key without a slash is a cluster-scoped name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// An Event to publish: `reason` is a CamelCase word (the e2e tests match on it), `note` the why in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub target: Target,
    pub kind: EventKind,
    pub reason: String,
    /// What kubedrs did or would do (`Migrate`, `Bind`, `Recommend`, `Cordon`...).
    pub action: String,
    pub note: String,
    /// Emit once while this key keeps appearing pass after pass (see `EventMemo`); `None`: every time.
    pub once: Option<String>,
}

impl EventSpec {
    pub fn new(target: Target, kind: EventKind, reason: &str, action: &str, note: impl Into<String>) -> Self {
        EventSpec { target, kind, reason: reason.into(), action: action.into(), note: note.into(), once: None }
    }

    pub fn once(mut self, key: impl Into<String>) -> Self {
        self.once = Some(key.into());
        self
    }
}

/// One change to the cluster. The executor applies them in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create a `VirtualMachineInstanceMigration` (see `VirtualMachineInstanceMigration::for_move`).
    CreateMigration {
        namespace: String,
        vmi: String,
        from: String,
        to: String,
        reason: Reason,
        why: String,
    },
    /// Bind a pending pod to a node through the Binding subresource.
    Bind {
        namespace: String,
        pod: String,
        node: String,
        vm: String,
        why: String,
    },
    /// Delete a finished migration kubedrs created (garbage collection).
    DeleteMigration {
        namespace: String,
        name: String,
    },
    /// Patch a node: `spec.unschedulable` and annotations (`None` removes one).
    PatchNode {
        node: String,
        unschedulable: Option<bool>,
        annotations: BTreeMap<String, Option<String>>,
    },
    Event(EventSpec),
}

/// A pending pod with `schedulerName: kubedrs` and no node, whose VM is in the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPod {
    pub namespace: String,
    pub name: String,
    /// The VM (`namespace/name`) it runs.
    pub vm: String,
    pub kind: PodKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodKind {
    /// The VM's first virt-launcher pod: placed by the plan.
    Launch,
    /// The target pod of a migration: bound to the migration's target node (its `addedNodeSelector`), or
    /// when the migration names none (a user's), to the least loaded node that fits its node selector.
    MigrationTarget { target: Option<String>, source: Option<String>, node_selector: BTreeMap<String, String> },
}
