//! kubedrs' end-to-end harness.
//!
//! - [`kubevirt`]: what KubeVirt's controllers write, as pure functions of what they read;
//! - [`emulator`]: the `kubevirt-emulator` binary's loop (virt-controller + virt-handler, emulated);
//! - [`eviction`]: virt-api's `pods/eviction` webhook and virt-controller's evacuation controller;
//! - [`harness`]: what the scenarios in `tests/` use: the cluster's client, child processes (operator,
//!   emulator) that die with the test, polling with timeouts, VMs, pools, load.

pub mod emulator;
pub mod eviction;
pub mod harness;
pub mod kubevirt;
pub mod quantity;
