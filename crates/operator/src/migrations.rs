//! The migrations kubedrs created, read back from the VMIM reflector: the memory of the runtime.
//!
//! Part of **observe** and **actuate**: kubedrs keeps no migration state of its own that a restart could
//! lose. Everything it needs is derived, purely, from the `VirtualMachineInstanceMigration`s it labelled
//! `kubedrs.io/pool=<pool>`:
//!
//! - the migrations in flight ([`Ledger::in_flight`]): they hold concurrency slots across passes and are
//!   adopted after a restart;
//! - the recent moves ([`Ledger::history`]): the engine's ping-pong and per-day limits survive restarts;
//! - the failed ones among them (in the history): the engine backs those VMs off;
//! - which finished migrations may be garbage-collected ([`Ledger::collectable`]).

use std::collections::BTreeSet;

use crate::kubevirt::{MigrationPhase, VirtualMachineInstanceMigration};
use kubedrs_engine::{InFlight, PastMove, Reason};

/// A VMIM reduced to what the runtime decides on. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRecord {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// `namespace/vmiName`.
    pub vm: String,
    /// The `kubedrs.io/pool` label; `None` for migrations kubedrs did not create.
    pub pool: Option<String>,
    pub reason: Option<Reason>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub phase: MigrationPhase,
    pub created: Option<i64>,
    pub finished: Option<i64>,
}

impl MigrationRecord {
    pub fn from_vmim(m: &VirtualMachineInstanceMigration) -> Self {
        MigrationRecord {
            namespace: m.metadata.namespace.clone().unwrap_or_default(),
            name: m.metadata.name.clone().unwrap_or_default(),
            uid: m.metadata.uid.clone(),
            vm: m.vm_key(),
            pool: m.pool().map(str::to_string),
            reason: m.reason(),
            source: m.source_node().map(str::to_string),
            target: m.target_node().map(str::to_string),
            phase: m.phase(),
            created: m.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()),
            finished: m.finished_at().map(|t| t.0.as_second()),
        }
    }

    /// Not Succeeded nor Failed, and not being deleted... (a deleted VMIM leaves the reflector).
    pub fn is_unfinished(&self) -> bool {
        !self.phase.is_finished()
    }

    /// Best known time it finished: its end, else its creation.
    fn finished_or_created(&self) -> i64 {
        self.finished.or(self.created).unwrap_or(0)
    }

    /// `balance`, `maintenance`... or `unknown` (a label someone edited).
    pub fn reason_label(&self) -> &'static str {
        self.reason.map(Reason::as_str).unwrap_or("unknown")
    }

    /// `succeeded`, `failed`, or `None` while running.
    pub fn result_label(&self) -> Option<&'static str> {
        match self.phase {
            MigrationPhase::Succeeded => Some("succeeded"),
            MigrationPhase::Failed => Some("failed"),
            _ => None,
        }
    }
}

/// Finished migrations are kept this long (they are the move history of the engine's per-day limit).
pub const HISTORY_SECS: i64 = 24 * 3600;

/// The migrations of one pool, plus every unfinished migration in the cluster (whoever created it: KubeVirt
/// refuses a second migration of a VMI, so kubedrs must not try).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// kubedrs' migrations of this pool, oldest first.
    pub ours: Vec<MigrationRecord>,
    /// VMs (`namespace/name`) with an unfinished migration, any creator.
    pub migrating: BTreeSet<String>,
}

impl Ledger {
    /// Builds the ledger of `pool` from every VMIM the reflector holds.
    pub fn new<'a>(pool: &str, all: impl IntoIterator<Item = &'a VirtualMachineInstanceMigration>) -> Self {
        let mut ledger = Ledger::default();
        for m in all {
            let r = MigrationRecord::from_vmim(m);
            if r.is_unfinished() {
                ledger.migrating.insert(r.vm.clone());
            }
            if r.pool.as_deref() == Some(pool) {
                ledger.ours.push(r);
            }
        }
        ledger.ours.sort_by(|a, b| (a.created, &a.namespace, &a.name).cmp(&(b.created, &b.namespace, &b.name)));
        ledger
    }

    /// kubedrs' unfinished migrations of the pool: they hold concurrency slots and are adopted as they are.
    pub fn active(&self) -> impl Iterator<Item = &MigrationRecord> {
        self.ours.iter().filter(|r| r.is_unfinished())
    }

    /// For the snapshot: migrations in flight with known ends. A migration whose source or target is not
    /// known yet (KubeVirt has not filled its state and the annotations were removed) still counts as
    /// migrating through [`Ledger::migrating`].
    pub fn in_flight(&self) -> Vec<InFlight> {
        self.active()
            .filter_map(|r| Some(InFlight { vm: r.vm.clone(), source: r.source.clone()?, target: r.target.clone()? }))
            .collect()
    }

    /// For the snapshot: finished moves in the last 24 hours, failed ones too (the engine backs off).
    pub fn history(&self, now: i64) -> Vec<PastMove> {
        self.ours
            .iter()
            .filter(|r| matches!(r.phase, MigrationPhase::Succeeded | MigrationPhase::Failed))
            .filter(|r| now - r.finished_or_created() <= HISTORY_SECS)
            .filter_map(|r| {
                Some(PastMove {
                    vm: r.vm.clone(),
                    from: r.source.clone()?,
                    to: r.target.clone()?,
                    at: u64::try_from(r.finished_or_created()).unwrap_or(0),
                    succeeded: r.phase == MigrationPhase::Succeeded,
                })
            })
            .collect()
    }

    /// Finished migrations older than the history window beyond the newest `keep`: safe to delete.
    pub fn collectable(&self, keep: usize, now: i64) -> Vec<&MigrationRecord> {
        let finished: Vec<&MigrationRecord> = self.ours.iter().filter(|r| !r.is_unfinished()).collect();
        let old = finished.len().saturating_sub(keep);
        finished.into_iter().take(old).filter(|r| now - r.finished_or_created() > HISTORY_SECS).collect()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! `Vmim::test("ns", "web-1").from("n1").to("n2").phase("Running")` builders for runtime tests.

    use super::*;
    use crate::kubevirt::{MigrationState, VirtualMachineInstanceMigrationStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    pub struct VmimBuilder(pub VirtualMachineInstanceMigration);

    pub fn time(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    pub fn vmim(ns: &str, vmi: &str, pool: &str, reason: Reason) -> VmimBuilder {
        let mut m = VirtualMachineInstanceMigration::for_move(ns, vmi, "n1", "n2", pool, reason);
        m.metadata.name = Some(format!("kubedrs-{vmi}-x{}", vmi.len()));
        m.metadata.uid = Some(format!("uid-{vmi}"));
        VmimBuilder(m)
    }

    impl VmimBuilder {
        pub fn named(mut self, name: &str) -> Self {
            self.0.metadata.name = Some(name.into());
            self.0.metadata.uid = Some(format!("uid-{name}"));
            self
        }
        pub fn from(mut self, n: &str) -> Self {
            self.0.metadata.annotations.get_or_insert_default().insert(crate::keys::SOURCE_NODE.into(), n.into());
            self
        }
        pub fn to(mut self, n: &str) -> Self {
            self.0.metadata.annotations.get_or_insert_default().insert(crate::keys::TARGET_NODE.into(), n.into());
            self.0.spec.added_node_selector = Some([(crate::keys::HOSTNAME.to_string(), n.to_string())].into());
            self
        }
        pub fn created(mut self, secs: i64) -> Self {
            self.0.metadata.creation_timestamp = Some(time(secs));
            self
        }
        pub fn phase(mut self, p: &str) -> Self {
            self.0.status.get_or_insert_default().phase = Some(MigrationPhase::from(p));
            self
        }
        pub fn ended(mut self, secs: i64) -> Self {
            let st: &mut VirtualMachineInstanceMigrationStatus = self.0.status.get_or_insert_default();
            st.migration_state.get_or_insert_with(MigrationState::default).end_timestamp = Some(time(secs));
            self
        }
        pub fn unlabelled(mut self) -> Self {
            self.0.metadata.labels = None;
            self
        }
        pub fn build(self) -> VirtualMachineInstanceMigration {
            self.0
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn in_flight_and_history_come_from_labelled_migrations_only() {
        let all = vec![
            vmim("ns", "a", "prod", Reason::Balance).from("n1").to("n2").created(100).phase("Running").build(),
            vmim("ns", "b", "prod", Reason::Maintenance)
                .from("n1")
                .to("n3")
                .created(50)
                .phase("Succeeded")
                .ended(90)
                .build(),
            vmim("ns", "c", "other", Reason::Balance).created(10).phase("Running").build(),
            vmim("ns", "d", "prod", Reason::Balance).created(10).phase("Scheduling").unlabelled().build(),
        ];
        let l = Ledger::new("prod", &all);
        assert_eq!(l.in_flight(), vec![InFlight { vm: "ns/a".into(), source: "n1".into(), target: "n2".into() }]);
        assert_eq!(
            l.history(200),
            vec![PastMove { vm: "ns/b".into(), from: "n1".into(), to: "n3".into(), at: 90, succeeded: true }]
        );
        assert!(l.history(90 + HISTORY_SECS + 1).is_empty());
        // Any unfinished migration blocks a second one, whoever made it.
        assert_eq!(l.migrating, ["ns/a", "ns/c", "ns/d"].into_iter().map(String::from).collect());
        assert_eq!(l.active().count(), 1);
    }

    #[test]
    fn garbage_collection_keeps_history_and_the_newest() {
        let all: Vec<_> = (0..5)
            .map(|i| {
                vmim("ns", "a", "prod", Reason::Balance)
                    .named(&format!("m{i}"))
                    .created(i * 10)
                    .phase("Succeeded")
                    .ended(i * 10 + 5)
                    .build()
            })
            .collect();
        let l = Ledger::new("prod", &all);
        assert!(l.collectable(2, 1000).is_empty(), "inside the 24 h history");
        let gone: Vec<_> = l.collectable(2, HISTORY_SECS + 1000).iter().map(|r| r.name.clone()).collect();
        assert_eq!(gone, vec!["m0", "m1", "m2"]);
    }
}
