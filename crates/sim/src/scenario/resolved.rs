//! The resolved scenario the run starts from, and the entry point that reads a file into it.

use crate::workload::Workload;
use crate::yamlpos::PathIndex;
use kubedrs_engine::{Node, PoolSettings, Rule, Shares, Vm};
use kubedrs_spec::quantity;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;

// The resolved scenario

/// How a VM's CPU model follows the node it starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCpu {
    Model,
    Passthrough,
}

/// One VM of the pool, at the start of the run.
#[derive(Debug, Clone)]
pub struct VmDef {
    /// `node` is the initial node (None: placed by the engine); `demand` is filled by the run.
    pub vm: Vm,
    /// `host-model` / `host-passthrough`: the requirement is set from the node it starts on.
    pub host_cpu: Option<HostCpu>,
    pub powered_on: bool,
    pub workload: Workload,
    /// Its group's name or prefix (metrics are also given per group).
    pub group: String,
    /// Field path of its group, to point errors at it.
    pub origin: String,
}

/// What a `set` event changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub cpu_shares: Option<Shares>,
    pub memory_shares: Option<Shares>,
    pub requests: Option<(Option<u64>, Option<u64>)>,
    pub limits: Option<(Option<u64>, Option<u64>)>,
}

impl Change {
    /// Applies the change to a VM (limits below requests were refused when the scenario was read).
    pub fn apply(&self, vm: &mut Vm) {
        if let Some(s) = self.cpu_shares {
            vm.cpu.shares = s;
        }
        if let Some(s) = self.memory_shares {
            vm.memory.shares = s;
        }
        if let Some((cpu, mem)) = self.requests {
            vm.cpu.reservation = cpu.unwrap_or(vm.cpu.reservation);
            vm.memory.reservation = mem.unwrap_or(vm.memory.reservation);
        }
        if let Some((cpu, mem)) = self.limits {
            vm.cpu.limit = cpu.or(vm.cpu.limit);
            vm.memory.limit = mem.or(vm.memory.limit);
        }
    }

    /// In words, for the timeline.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.cpu_shares {
            parts.push(format!("cpu shares {s}"));
        }
        if let Some(s) = self.memory_shares {
            parts.push(format!("memory shares {s}"));
        }
        for (what, pair) in [("requests", self.requests), ("limits", self.limits)] {
            if let Some((cpu, mem)) = pair {
                if let Some(c) = cpu {
                    parts.push(format!("cpu {what} {}", quantity::format_cpu(c)));
                }
                if let Some(m) = mem {
                    parts.push(format!("memory {what} {}", quantity::format_memory(m)));
                }
            }
        }
        parts.join(", ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    EnterMaintenance(String),
    ExitMaintenance(String),
    FailNode(String),
    RecoverNode(String),
    AddNodes(Vec<Node>),
    PowerOn(Vec<String>),
    PowerOff(Vec<String>),
    Set { vms: Vec<String>, target: String, change: Change },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds from the start.
    pub at: u64,
    pub kind: EventKind,
    pub origin: String,
}

/// Migration time model (see [`super::migration`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MigrationModel {
    pub bandwidth: f64,
    pub setup_secs: f64,
    pub max_downtime_secs: f64,
    pub timeout_per_gib: f64,
    pub failure_probability: f64,
}

impl Default for MigrationModel {
    fn default() -> Self {
        MigrationModel {
            bandwidth: (1u64 << 30) as f64,
            setup_secs: 10.0,
            max_downtime_secs: 0.3,
            timeout_per_gib: 150.0,
            failure_probability: 0.0,
        }
    }
}

/// A pool ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub duration: u64,
    pub step: u64,
    pub interval: u64,
    pub seed: u64,
    pub pool: PoolSettings,
    pub rules: Vec<Rule>,
    pub migration: MigrationModel,
    pub ha_restart_delay: u64,
    pub ping_pong_window: u64,
    pub nodes: Vec<Node>,
    /// Field path of the group of each node of `nodes`.
    pub node_origins: Vec<String>,
    pub vms: Vec<VmDef>,
    /// In time order (file order within a time).
    pub events: Vec<Event>,
    pub(crate) index: PathIndex,
}

/// Most steps a run may take (a year of minutes): beyond that a typo in `duration` or `step` is likelier.
pub(crate) const MAX_STEPS: u64 = 525_600;
/// The traces shipped with the repository (`data/traces`), found from a scenario's folder upwards.
pub const DEFAULT_TRACES: &str = "data/traces";
pub(crate) const DEFAULT_DIRTY_RATE: u64 = 16 << 20;

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read the scenario: {e}"),
        })?;
        Scenario::parse(path, &text)
    }

    /// Checks a scenario given as text; `path` names it in errors and anchors relative trace folders.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let index = PathIndex::parse(text);
        let file: ScenarioFile = serde_yaml::from_str(text).map_err(|e| yaml_error(path, e))?;
        Resolver { path, index: &index, vm_names: BTreeSet::new() }.resolve(file, index.clone())
    }

    /// An error at a field of this scenario (the line is looked up).
    pub fn error_at(&self, field: &str, message: impl Into<String>) -> ScenarioError {
        located(&self.path, &self.index, field, message.into())
    }
}
