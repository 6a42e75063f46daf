//! kubedrs' end-to-end harness.
//!
//! - [`kubevirt`]: KubeVirt's names and resources, small functions of its objects, watches;
//! - [`node`]: the `kubevirt-node` binary's loop: virt-handler and the kubelet of virt-launcher pods on
//!   every KWOK node, beside the real virt-controller and virt-api that `e2e/cluster up` runs;
//! - [`harness`]: what the scenarios in `tests/` use: the cluster's client, child processes (operator,
//!   node emulator) that die with the test, polling with timeouts, VMs, pools, load.

pub mod harness;
pub mod kubevirt;
pub mod node;
pub mod quantity;
