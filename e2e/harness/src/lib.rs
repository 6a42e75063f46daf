//! kubedrs' end-to-end harness.
//!
//! - [`kubevirt`]: what KubeVirt's controllers write, as pure functions of what they read;
//! - [`node`]: the `kubevirt-node` binary's loop: virt-handler and the kubelet of virt-launcher pods on
//!   every KWOK node, beside the real virt-controller and virt-api (`E2E_KUBEVIRT=real`, the default);
//! - [`emulator`]: the `kubevirt-emulator` binary's loop (virt-controller + virt-handler, emulated;
//!   `E2E_KUBEVIRT=emulated`);
//! - [`eviction`]: virt-api's `pods/eviction` webhook and virt-controller's evacuation controller;
//! - [`harness`]: what the scenarios in `tests/` use: the cluster's client, child processes (operator,
//!   emulator) that die with the test, polling with timeouts, VMs, pools, load.

pub mod emulator;
pub mod eviction;
pub mod harness;
pub mod kubevirt;
pub mod node;
pub mod quantity;
