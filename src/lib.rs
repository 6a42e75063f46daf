//! kubedrs: a Distributed Resource Scheduler for KubeVirt.
//!
//! - [`engine`]: the pure planner (snapshot in, plan out).
//! - [`sim`]: runs a pool over simulated time with the same engine (`kubedrs simulate`).
//! - [`operator`]: the Kubernetes adapter (HostPool CRD, KubeVirt types, reconcile loops).

pub mod engine;
pub mod operator;
pub mod quantity;
pub mod sim;
