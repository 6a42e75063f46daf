//! The simulator: a pool run over simulated time with the engine, in-process, no cluster (`kubedrs simulate`).
//!
//! Pipeline: [`scenario`] reads and checks the YAML file (with [`yamlpos`] to point errors at lines) ->
//! [`cluster`] holds the simulated pool, demand from [`workload`], migrations timed by [`migration`] ->
//! [`run`] steps time, calls [`kubedrs_engine::plan`] every interval and carries out the plan as the operator's
//! actuator would -> [`metrics`] measures what was delivered ([`divvy`] at node level) -> [`cli`] prints the
//! timeline and summary, `--json`, or the HTML page of [`report`].

pub mod cli;
pub mod cluster;
pub mod compare;
pub mod cpu;
pub mod divvy;
pub mod insight;
pub mod metrics;
pub mod migration;
pub mod policies;
pub mod report;
pub mod run;
pub mod scenario;
pub mod workload;
pub mod yamlpos;

pub use metrics::RunResult;
pub use run::{simulate, simulate_with};
pub use scenario::{Scenario, ScenarioError};
