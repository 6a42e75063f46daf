//! The DRS engine: a pure function from a pool [`Snapshot`] to a [`Plan`].
//!
//! No I/O, no Kubernetes types, no clocks: the operator and the simulator build snapshots and carry out
//! plans. A pass runs in the order of the design note (docs/algorithm.md):
//! validate -> entitlement -> mandatory moves (maintenance, hard rules, reservations) -> placement of new
//! VMs -> balancing, each step reading and updating one [`state::PoolState`].

pub mod model;
pub mod plan;

pub use model::*;
pub use plan::*;

/// Plans one pass over a pool.
pub fn plan(snapshot: &Snapshot) -> Result<Plan, InvalidSnapshot> {
    let _ = snapshot;
    Ok(Plan::default())
}
