//! The Kubernetes operator: HostPool CRD, KubeVirt types, inventory, actuation, status.
//!
//! Pipeline per pool (see `docs/operator.md`): **observe** (reflector stores -> `observe`, a pure function to
//! an engine snapshot) -> **plan** ([`kubedrs_engine::plan`]) -> **actuate** -> **status**.
//!
//! - [`crd`]: the `HostPool` resource, its status and the validation the schema cannot do.

pub mod action;
pub mod actuate;
pub mod cleanup;
pub mod controller;
pub mod crd;
pub mod demand;
pub mod events;
pub mod execute;
pub mod fixtures;
pub mod heap;
pub mod inventory;
pub mod keys;
pub mod kubectl;
pub mod kubevirt;
pub mod leader;
pub mod maintenance;
pub mod metrics_api;
pub mod migrations;
pub mod observe;
pub mod pass;
pub mod plan_cli;
pub mod pod;
pub mod readiness;
pub mod run;
pub mod shards;
pub mod status;
pub mod telemetry;
pub mod tolerant;
pub mod webhook;
