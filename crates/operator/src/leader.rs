//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas are safe.
//!
//! Around the pipeline: every replica keeps its reflectors warm and serves `/healthz`, `/readyz` and
//! `/metrics`; only the replica holding the Lease runs passes that act (migrations, bindings, node patches,
//! status, Events). The Lease is held with `kube-lease-manager` (server-side apply, field manager
//! `kubedrs`), 15 s validity renewed 5 s before it expires; a replica that dies is replaced within ~15 s.
//! Without `--leader-elect` the process is always the leader (one replica, or `kubedrs plan`).

use tokio::sync::watch;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

/// Lease validity in seconds.
pub const LEASE_SECONDS: u64 = 15;
/// Renew this many seconds before the lease expires.
pub const GRACE_SECONDS: u64 = 5;

/// Whether this replica leads. Cheap to clone and to ask.
#[derive(Debug, Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// A process that always leads (no election).
    pub fn always() -> Self {
        // The receiver keeps the last value after the sender is gone.
        let (_tx, rx) = watch::channel(true);
        Leadership(rx)
    }

    /// Takes part in the election for the Lease `name` in `namespace` as `identity` (the pod's name).
    pub async fn elect(client: Client, namespace: &str, name: &str, identity: &str) -> anyhow::Result<Self> {
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(GRACE_SECONDS)
            .with_field_manager(crate::status::FIELD_MANAGER)
            .build()
            .await?;
        let (rx, task) = manager.watch().await;
        let mut changes = rx.clone();
        let who = identity.to_string();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let leads = *changes.borrow_and_update();
                tracing::info!(identity = %who, leader = leads, "leadership changed");
            }
            match task.await {
                Ok(Ok(_)) => tracing::info!("leader election stopped"),
                Ok(Err(e)) => tracing::error!(error = %e, "leader election failed"),
                Err(e) => tracing::error!(error = %e, "leader election task panicked"),
            }
        });
        Ok(Leadership(rx))
    }

    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until this replica leads.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|l| *l).await;
    }

    /// A channel that changes with leadership (to trigger a pass on taking over).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}

/// This replica's identity: `POD_NAME` (the chart sets it from the downward API), else `HOSTNAME`, else a
/// name made from the process id.
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("kubedrs-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_election_the_process_leads() {
        assert!(Leadership::always().is_leader());
        assert!(!identity().is_empty());
    }
}
