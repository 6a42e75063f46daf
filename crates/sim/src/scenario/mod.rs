//! Scenario files: the YAML format of `kubedrs simulate` (documented field by field in docs/simulate.md), read in
//! two steps. [`ScenarioFile`] is the file as written (serde, unknown fields refused, quantities and durations
//! checked as they are read, so serde_yaml gives their line); [`Scenario`] is the resolved pool the run starts
//! from (groups expanded into nodes and VMs, names checked, events checked in time order, traces loaded).
//! Every error names the file, the line and column, the field and what is allowed ([`ScenarioError`]); errors
//! found after parsing find their line through a [`PathIndex`] of the file.
//!
//! Files: [`file`] (the file as written) with its [`scalars`], [`resolve`] (to the [`resolved`] scenario),
//! [`error`] (located errors).

mod error;
mod file;
mod resolve;
mod resolved;
#[macro_use]
mod scalars;

pub use error::*;
pub use file::*;
#[allow(unused_imports)]
pub use resolve::*;
pub use resolved::*;
pub use scalars::*;
