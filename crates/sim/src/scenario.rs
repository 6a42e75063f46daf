//! Scenario files: the YAML format of `kubedrs simulate` (documented field by field in docs/simulate.md), read in
//! two steps. [`ScenarioFile`] is the file as written (serde, unknown fields refused, quantities and durations
//! checked as they are read, so serde_yaml gives their line); [`Scenario`] is the resolved pool the run starts
//! from (groups expanded into nodes and VMs, names checked, events checked in time order, traces loaded).
//! Every error names the file, the line and column, the field and what is allowed ([`ScenarioError`]); errors
//! found after parsing find their line through a [`PathIndex`] of the file.

use super::cpu;
use super::workload::{Pattern, TRACE_SAMPLE_SECS, TraceStore, Workload};
use super::yamlpos::PathIndex;
use kubedrs_engine::{
    Allocation, Automation, CpuRequirement, Enforcement, Labels, Node, NodeState, PoolSettings, Resources, Rule,
    RuleKind, Selector, SelectorOperator, SelectorRequirement, Shares, Vm, VmAutomation,
};
use kubedrs_spec::pool::PoolFields;
use kubedrs_spec::quantity;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------------------------
// Errors

/// A scenario that cannot run: where, which field, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Field path as in the file (`vms[2].memory`); empty for the file as a whole.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Scalars read with their own checks (errors carry serde_yaml's location)

/// Reads a scalar, whether YAML typed it as a number or a string (`cpu: 4`, `cpu: 500m`), and parses its text
/// inside the visitor, so that serde_yaml attaches the scalar's own line and field path to a parse error.
struct ScalarVisitor<T>(fn(&str) -> Result<T, String>);

impl<T> Visitor<'_> for ScalarVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

fn scalar<'de, D: Deserializer<'de>, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<T, D::Error> {
    d.deserialize_any(ScalarVisitor(parse))
}

macro_rules! scalar_type {
    ($(#[$m:meta])* $name:ident($inner:ty), $parse:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $name(pub $inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                scalar(d, $parse).map($name)
            }
        }
    };
}

scalar_type!(
    /// CPU quantity in millicores (`4`, `500m`).
    Cpu(u64), |s| quantity::cpu_millis(s).map_err(|e| e.to_string())
);
scalar_type!(
    /// Memory quantity in bytes (`8Gi`).
    Mem(u64), |s| quantity::memory_bytes(s).map_err(|e| e.to_string())
);
scalar_type!(
    /// Duration in seconds (`90s`, `5m`, `1h30m`, `2d`, `500ms`, `14:30`, or a number of seconds).
    Dur(f64), parse_duration
);
scalar_type!(
    /// A fraction 0..=1, written `0.4` or `40%`.
    Frac(f64), parse_fraction
);
scalar_type!(
    /// `low`, `normal`, `high` or a positive integer.
    SharesValue(Shares), |s| s.parse::<Shares>()
);
scalar_type!(
    /// A positive integer, or `unlimited`.
    Limit(Option<u32>), |s| match s.trim() {
        "unlimited" => Ok(None),
        t => t.parse::<u32>().ok().filter(|n| *n > 0).map(Some)
            .ok_or_else(|| format!("{t:?} is not a limit: use a positive integer or `unlimited`")),
    }
);

/// The duration grammar of kubedrs ([`kubedrs_spec::duration::parse_secs`]).
pub fn parse_duration(s: &str) -> Result<f64, String> {
    kubedrs_spec::duration::parse_secs(s)
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(p) => (p.trim(), 0.01),
        None => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1.0).contains(&(v * scale)) => Ok(v * scale),
        Ok(_) => Err(format!("{t:?} is out of range: use 0..1 or 0%..100%")),
        Err(_) => Err(format!("{t:?} is not a fraction: use e.g. 0.4 or 40%")),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The file as written

/// A scenario file as written. Field names follow HostPool (api.md) where they overlap.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScenarioFile {
    pub name: Option<String>,
    pub description: Option<String>,
    /// How long the run lasts.
    pub duration: Dur,
    /// Demand sampling and metrics period (default 1m).
    pub step: Option<Dur>,
    /// Seed of every random draw (noise, migration failures); same seed, same run.
    #[serde(default)]
    pub seed: u64,
    /// Folder of the traces (default `data/traces`, the repository's), looked up from the scenario's folder upwards.
    pub traces: Option<String>,
    #[serde(default)]
    pub pool: PoolSpec,
    #[serde(default)]
    pub migration: MigrationSpec,
    /// HA restart of the VMs of a failed node.
    #[serde(default)]
    pub ha: HaSpec,
    #[serde(default)]
    pub metrics: MetricsSpec,
    pub nodes: Vec<NodeGroup>,
    #[serde(default)]
    pub vms: Vec<VmGroup>,
    #[serde(default)]
    pub events: Vec<EventSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolSpec {
    pub name: Option<String>,
    pub automation: Option<Automation>,
    pub migration_threshold: Option<i64>,
    /// Balancing pass period (default 5m).
    pub interval: Option<Dur>,
    pub concurrency: Option<ConcurrencySpec>,
    /// `Auto`, `Off` or a CPU model name.
    pub cpu_baseline: Option<String>,
    pub max_migrations_per_pass: Option<u32>,
    pub max_moves_per_vm_per_day: Option<u32>,
    pub cooldown: Option<Dur>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConcurrencySpec {
    pub per_pool: Option<Limit>,
    pub per_node_outbound: Option<Limit>,
    pub per_node_inbound: Option<Limit>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub enum RuleType {
    VMAffinity,
    VMAntiAffinity,
    VMNodeAffinity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RuleType,
    pub vm_selector: SelectorSpec,
    pub node_selector: Option<SelectorSpec>,
    pub enforcement: Option<Enforcement>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelectorSpec {
    #[serde(default)]
    pub match_labels: Labels,
    #[serde(default)]
    pub match_expressions: Vec<ExpressionSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpressionSpec {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrationSpec {
    /// Bytes per second one migration gets (default 1Gi, a shared 10 GbE link).
    pub bandwidth: Option<Mem>,
    /// Fixed cost of a migration: target pod start, handover (default 10s).
    pub setup: Option<Dur>,
    /// Pre-copy stops when the rest can be copied within this pause (default 300ms, QEMU's default).
    pub max_downtime: Option<Dur>,
    /// KubeVirt's completionTimeoutPerGiB (default 150 seconds per GiB of guest memory).
    #[serde(rename = "completionTimeoutPerGiB")]
    pub completion_timeout_per_gib: Option<u32>,
    /// Chance that a migration fails for reasons outside the model (default 0).
    pub failure_probability: Option<Frac>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HaSpec {
    /// Time from a node failure to its VMs asking for a new node (default 5m).
    pub restart_delay: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsSpec {
    /// A VM moved back to a node it left within this window is a ping-pong (default 2h).
    pub ping_pong_window: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeGroup {
    /// One node of this name, or (with `prefix` and `count`) `<prefix>-1` .. `<prefix>-<count>`.
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub count: Option<u32>,
    pub cpu: Cpu,
    pub memory: Mem,
    #[serde(default)]
    pub labels: Labels,
    /// CPU generation (`Haswell`, `Skylake`, `Rome`...): gives the node its CPU models and host model.
    pub generation: Option<String>,
    /// More CPU models, beyond those of the generation.
    #[serde(default)]
    pub cpu_models: Vec<String>,
    pub host_model: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    pub cpu: Option<Cpu>,
    pub memory: Option<Mem>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharesSpec {
    pub cpu: Option<SharesValue>,
    pub memory: Option<SharesValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmGroup {
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub count: Option<u32>,
    pub namespace: Option<String>,
    pub vcpus: u32,
    /// Guest memory.
    pub memory: Mem,
    /// Reservation (default: CPU vcpus/10 as KubeVirt's cpuAllocationRatio, memory the guest memory).
    pub requests: Option<ResourcesSpec>,
    pub limits: Option<ResourcesSpec>,
    pub shares: Option<SharesSpec>,
    #[serde(default)]
    pub labels: Labels,
    /// A KubeVirt CPU model, `host-model` or `host-passthrough`; unset: the pool baseline.
    pub cpu_model: Option<String>,
    /// Bytes per second the guest dirties (default 16Mi).
    pub dirty_rate: Option<Mem>,
    /// Initial node of every VM of the group; none: the engine places them at t=0.
    pub node: Option<String>,
    /// Initial nodes, round robin.
    #[serde(default)]
    pub nodes: Vec<String>,
    pub automation: Option<VmAutomation>,
    pub live_migratable: Option<bool>,
    /// false: the VMs start off and wait for a `powerOn` event (default true).
    pub powered_on: Option<bool>,
    pub workload: Option<WorkloadSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Share of the vCPUs (default steady 25%).
    pub cpu: Option<PatternSpec>,
    /// Working set as a share of guest memory (default steady 50%).
    pub memory: Option<PatternSpec>,
    pub noise: Option<Frac>,
    /// The n-th VM of the group runs n times this much ahead of the pattern.
    pub stagger: Option<Dur>,
}

/// A pattern: a fraction alone (steady) or a one-key map naming the kind.
#[derive(Debug, Clone)]
pub enum PatternSpec {
    Steady(Frac),
    Diurnal(DiurnalSpec),
    Spikes(SpikesSpec),
    Planetlab(PlanetlabSpec),
    Bitbrains(BitbrainsSpec),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum PatternMap {
    Steady(Frac),
    Diurnal(DiurnalSpec),
    Spikes(SpikesSpec),
    Planetlab(PlanetlabSpec),
    Bitbrains(BitbrainsSpec),
}

impl<'de> Deserialize<'de> for PatternSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PatternSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a fraction (0.4, 40%) or one of steady, diurnal, spikes, planetlab, bitbrains")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PatternSpec, E> {
                parse_fraction(v).map(|f| PatternSpec::Steady(Frac(f))).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PatternSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PatternSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PatternSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<PatternSpec, A::Error> {
                Ok(match PatternMap::deserialize(de::value::MapAccessDeserializer::new(map))? {
                    PatternMap::Steady(f) => PatternSpec::Steady(f),
                    PatternMap::Diurnal(s) => PatternSpec::Diurnal(s),
                    PatternMap::Spikes(s) => PatternSpec::Spikes(s),
                    PatternMap::Planetlab(s) => PatternSpec::Planetlab(s),
                    PatternMap::Bitbrains(s) => PatternSpec::Bitbrains(s),
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiurnalSpec {
    pub min: Frac,
    pub max: Frac,
    /// Default 24h.
    pub period: Option<Dur>,
    /// Time of the peak within the period (default 14:00).
    pub peak_at: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpikesSpec {
    pub base: Frac,
    /// Level during a spike.
    pub level: Frac,
    /// Start of the first spike.
    pub at: Dur,
    pub duration: Dur,
    /// Repeat period; none: one spike.
    pub every: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanetlabSpec {
    /// File `planetlab/<day>.csv.gz` (or `.csv`), e.g. 20110303.
    pub day: ScalarTextOwned,
    /// Row of the first VM of the group (0-based); the n-th VM takes row first+n.
    #[serde(default)]
    pub first: usize,
    /// Multiplier (PlanetLab VMs are mostly idle; 2.0 doubles every sample).
    pub scale: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BitbrainsSpec {
    /// File number of the first VM of the group (1..=500); the n-th VM takes first+n.
    pub first: Option<u32>,
    pub scale: Option<f64>,
}

/// A scalar kept as text (`day: 20110303` and `day: "20110303"` alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalarTextOwned(pub String);

impl<'de> Deserialize<'de> for ScalarTextOwned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |s| Ok(s.to_string())).map(ScalarTextOwned)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    EnterMaintenance,
    ExitMaintenance,
    FailNode,
    RecoverNode,
    AddNodes,
    PowerOn,
    PowerOff,
    Set,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventSpec {
    pub at: Dur,
    pub action: Action,
    pub node: Option<String>,
    /// For `addNodes`: a node group.
    pub nodes: Option<NodeGroup>,
    pub vm: Option<String>,
    /// A VM group, by its `name` or `prefix`.
    pub group: Option<String>,
    pub cpu_shares: Option<SharesValue>,
    pub memory_shares: Option<SharesValue>,
    pub requests: Option<ResourcesSpec>,
    pub limits: Option<ResourcesSpec>,
}

// ---------------------------------------------------------------------------------------------------------------
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
    index: PathIndex,
}

/// Most steps a run may take (a year of minutes): beyond that a typo in `duration` or `step` is likelier.
const MAX_STEPS: u64 = 525_600;
/// The traces shipped with the repository (`data/traces`), found from a scenario's folder upwards.
pub const DEFAULT_TRACES: &str = "data/traces";
const DEFAULT_DIRTY_RATE: u64 = 16 << 20;

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

fn located(path: &Path, index: &PathIndex, field: &str, message: String) -> ScenarioError {
    let pos = index.locate(field);
    ScenarioError {
        file: path.to_path_buf(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        field: field.to_string(),
        message,
    }
}

/// serde_yaml's error, split into the field path it starts with and the rest, the location moved to the front.
fn yaml_error(path: &Path, e: serde_yaml::Error) -> ScenarioError {
    let loc = e.location();
    let mut text = e.to_string();
    if let Some(l) = &loc {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(stripped) = text.strip_suffix(&suffix) {
            text = stripped.to_string();
        }
    }
    let (field, message) = match text.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && head.chars().all(|c| c.is_alphanumeric() || "._[]-".contains(c)) => {
            (head.to_string(), rest.to_string())
        }
        _ => (String::new(), text),
    };
    ScenarioError {
        file: path.to_path_buf(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        field,
        message,
    }
}

struct Resolver<'a> {
    path: &'a Path,
    index: &'a PathIndex,
    vm_names: BTreeSet<String>,
}

type R<T> = Result<T, ScenarioError>;

impl Resolver<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ScenarioError {
        located(self.path, self.index, field, message.into())
    }

    fn whole_secs(&self, field: &str, d: Dur, min: f64) -> R<u64> {
        if d.0 < min {
            return Err(self.err(field, format!("{}s is too short: at least {min}s", d.0)));
        }
        if d.0.fract() != 0.0 {
            return Err(self.err(field, format!("{}s: use whole seconds", d.0)));
        }
        Ok(d.0 as u64)
    }

    fn resolve(mut self, f: ScenarioFile, index: PathIndex) -> R<Scenario> {
        let name = f.name.clone().unwrap_or_else(|| {
            self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scenario".into())
        });
        let step = self.whole_secs("step", f.step.unwrap_or(Dur(60.0)), 1.0)?;
        let duration = self.whole_secs("duration", f.duration, 1.0)?;
        let interval = self.whole_secs("pool.interval", f.pool.interval.unwrap_or(Dur(300.0)), 10.0)?;
        if interval % step != 0 {
            return Err(self.err("pool.interval", format!("{interval}s is not a multiple of step ({step}s)")));
        }
        if duration < step {
            return Err(self.err("duration", format!("{duration}s is shorter than one step ({step}s)")));
        }
        if duration / step > MAX_STEPS {
            return Err(self.err(
                "duration",
                format!("{} steps of {step}s: at most {MAX_STEPS}; use a longer step", duration / step),
            ));
        }

        let pool = self.pool(&f.pool, &name)?;
        let rules = self.rules(&f.pool.rules)?;
        let migration = self.migration(&f.migration)?;
        let ha_restart_delay = self.whole_secs("ha.restartDelay", f.ha.restart_delay.unwrap_or(Dur(300.0)), 0.0)?;
        let ping_pong_window =
            self.whole_secs("metrics.pingPongWindow", f.metrics.ping_pong_window.unwrap_or(Dur(7200.0)), 0.0)?;

        if f.nodes.is_empty() {
            return Err(self.err("nodes", "the pool needs at least one node group"));
        }
        let mut nodes = Vec::new();
        let mut node_origins = Vec::new();
        let mut node_names = BTreeSet::new();
        for (i, group) in f.nodes.iter().enumerate() {
            let origin = format!("nodes[{i}]");
            for node in self.node_group(group, &origin, &mut node_names)? {
                nodes.push(node);
                node_origins.push(origin.clone());
            }
        }

        let traces_dir = f.traces.as_deref().unwrap_or(DEFAULT_TRACES);
        let samples = (duration as f64 / TRACE_SAMPLE_SECS).ceil() as usize + 2;
        let mut traces = None;
        let mut vms = Vec::new();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, group) in f.vms.iter().enumerate() {
            let origin = format!("vms[{i}]");
            let defs = self.vm_group(group, &origin, &nodes, (traces_dir, samples, &mut traces))?;
            let label = group.name.clone().or_else(|| group.prefix.clone()).unwrap_or_default();
            groups.entry(label).or_default().extend(defs.iter().map(|d| d.vm.name.clone()));
            vms.extend(defs);
        }

        let events = self.events(&f.events, duration, &mut node_names, &groups)?;
        Ok(Scenario {
            path: self.path.to_path_buf(),
            name,
            description: f.description.unwrap_or_default(),
            duration,
            step,
            interval,
            seed: f.seed,
            pool,
            rules,
            migration,
            ha_restart_delay,
            ping_pong_window,
            nodes,
            node_origins,
            vms,
            events,
            index,
        })
    }

    fn pool(&self, p: &PoolSpec, name: &str) -> R<PoolSettings> {
        let c = p.concurrency.as_ref();
        let fields = PoolFields {
            automation: p.automation,
            migration_threshold: p.migration_threshold,
            interval_secs: p.interval.map(|d| d.0),
            per_pool: c.and_then(|c| c.per_pool).map(|l| l.0),
            per_node_outbound: c.and_then(|c| c.per_node_outbound).map(|l| l.0),
            per_node_inbound: c.and_then(|c| c.per_node_inbound).map(|l| l.0),
            cpu_baseline: p.cpu_baseline.clone(),
            max_migrations_per_pass: p.max_migrations_per_pass.map(i64::from),
            max_moves_per_vm_per_day: p.max_moves_per_vm_per_day.map(i64::from),
            cooldown_secs: p.cooldown.map(|d| d.0),
        };
        let name = p.name.clone().unwrap_or_else(|| name.to_string());
        match kubedrs_spec::pool::build(&name, &fields, "pool") {
            Ok(built) => Ok(built.settings),
            // Pointed at the first field; every problem listed.
            Err(errors) => {
                let all = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                let first = errors[0].field.trim_start_matches("pool.").to_string();
                let message = if errors.len() == 1 { errors[0].message.clone() } else { all };
                Err(self.err(&format!("pool.{first}"), message))
            }
        }
    }

    fn selector(&self, field: &str, s: &SelectorSpec) -> R<Selector> {
        for (i, e) in s.match_expressions.iter().enumerate() {
            let needs_values = matches!(e.operator, SelectorOperator::In | SelectorOperator::NotIn);
            if needs_values == e.values.is_empty() {
                let what =
                    if needs_values { "In and NotIn need values" } else { "Exists and DoesNotExist take no values" };
                return Err(self.err(&format!("{field}.matchExpressions[{i}].values"), what));
            }
        }
        Ok(Selector {
            match_labels: s.match_labels.clone(),
            match_expressions: s
                .match_expressions
                .iter()
                .map(|e| SelectorRequirement { key: e.key.clone(), operator: e.operator, values: e.values.clone() })
                .collect(),
        })
    }

    fn rules(&self, specs: &[RuleSpec]) -> R<Vec<Rule>> {
        let mut names = BTreeSet::new();
        let mut rules = Vec::new();
        for (i, r) in specs.iter().enumerate() {
            let field = format!("pool.rules[{i}]");
            if r.name.is_empty() || !names.insert(r.name.clone()) {
                return Err(self
                    .err(&format!("{field}.name"), format!("{:?}: rule names must be unique and not empty", r.name)));
            }
            let vm_selector = self.selector(&format!("{field}.vmSelector"), &r.vm_selector)?;
            let kind = match (r.kind, &r.node_selector) {
                (RuleType::VMNodeAffinity, Some(ns)) => RuleKind::VMNodeAffinity {
                    vm_selector,
                    node_selector: self.selector(&format!("{field}.nodeSelector"), ns)?,
                },
                (RuleType::VMNodeAffinity, None) => {
                    return Err(self.err(&format!("{field}.nodeSelector"), "VMNodeAffinity needs a nodeSelector"));
                }
                (_, Some(_)) => {
                    return Err(
                        self.err(&format!("{field}.nodeSelector"), "only VMNodeAffinity rules take a nodeSelector")
                    );
                }
                (RuleType::VMAffinity, None) => RuleKind::VMAffinity { vm_selector },
                (RuleType::VMAntiAffinity, None) => RuleKind::VMAntiAffinity { vm_selector },
            };
            rules.push(Rule { name: r.name.clone(), kind, enforcement: r.enforcement.unwrap_or_default() });
        }
        Ok(rules)
    }

    fn migration(&self, m: &MigrationSpec) -> R<MigrationModel> {
        let d = MigrationModel::default();
        let bandwidth = m.bandwidth.map(|b| b.0 as f64).unwrap_or(d.bandwidth);
        if bandwidth < (1 << 20) as f64 {
            return Err(self.err("migration.bandwidth", "is below 1Mi per second: give bytes per second, e.g. 1Gi"));
        }
        let timeout = m.completion_timeout_per_gib.map(f64::from).unwrap_or(d.timeout_per_gib);
        if timeout <= 0.0 {
            return Err(self.err("migration.completionTimeoutPerGiB", "must be a positive number of seconds"));
        }
        Ok(MigrationModel {
            bandwidth,
            setup_secs: m.setup.map(|d| d.0).unwrap_or(d.setup_secs),
            max_downtime_secs: m.max_downtime.map(|d| d.0).unwrap_or(d.max_downtime_secs),
            timeout_per_gib: timeout,
            failure_probability: m.failure_probability.map(|f| f.0).unwrap_or(0.0),
        })
    }

    /// `name`, or `prefix-1..prefix-count`.
    fn names(&self, field: &str, name: &Option<String>, prefix: &Option<String>, count: Option<u32>) -> R<Vec<String>> {
        match (name, prefix, count) {
            (Some(n), None, None | Some(1)) if !n.is_empty() => Ok(vec![n.clone()]),
            (None, Some(p), Some(c)) if !p.is_empty() && (1..=100_000).contains(&c) => {
                Ok((1..=c).map(|i| format!("{p}-{i}")).collect())
            }
            (None, Some(_), Some(c)) if c == 0 || c > 100_000 => {
                Err(self.err(&format!("{field}.count"), format!("{c} is out of range: 1..=100000")))
            }
            (None, Some(_), None) => Err(self.err(&format!("{field}.count"), "a prefix needs a count")),
            (Some(_), Some(_), _) => {
                Err(self.err(&format!("{field}.prefix"), "give either name (one) or prefix and count, not both"))
            }
            (Some(_), None, Some(_)) => {
                Err(self.err(&format!("{field}.count"), "count goes with prefix (prefix-1 .. prefix-count), not name"))
            }
            _ => Err(self.err(&format!("{field}.name"), "give a name (one) or a prefix and a count")),
        }
    }

    fn node_group(&self, g: &NodeGroup, field: &str, taken: &mut BTreeSet<String>) -> R<Vec<Node>> {
        if g.cpu.0 == 0 {
            return Err(self.err(&format!("{field}.cpu"), "a node needs some CPU"));
        }
        if g.memory.0 == 0 {
            return Err(self.err(&format!("{field}.memory"), "a node needs some memory"));
        }
        let (mut models, mut vendor, mut host_model) = (BTreeSet::new(), None, g.host_model.clone());
        if let Some(wanted) = &g.generation {
            let found = cpu::generation(wanted).ok_or_else(|| {
                self.err(
                    &format!("{field}.generation"),
                    format!("unknown CPU generation {wanted:?}; known: {}", cpu::names()),
                )
            })?;
            models = found.models();
            vendor = Some(found.vendor().to_string());
            host_model = host_model.or(Some(found.newest.to_string()));
        }
        models.extend(g.cpu_models.iter().cloned());
        let mut nodes = Vec::new();
        for name in self.names(field, &g.name, &g.prefix, g.count)? {
            if !taken.insert(name.clone()) {
                return Err(self.err(
                    &format!("{field}.{}", if g.name.is_some() { "name" } else { "prefix" }),
                    format!("node {name:?} is defined twice"),
                ));
            }
            let mut labels = g.labels.clone();
            labels.insert("kubernetes.io/hostname".into(), name.clone());
            nodes.push(Node {
                name,
                capacity: Resources::new(g.cpu.0, g.memory.0),
                state: NodeState::Ready,
                labels,
                cpu_vendor: vendor.clone(),
                cpu_models: models.clone(),
                host_model: host_model.clone(),
            });
        }
        Ok(nodes)
    }

    fn pattern(
        &self,
        field: &str,
        spec: &PatternSpec,
        member: usize,
        is_memory: bool,
        traces: (&str, usize, &mut Option<TraceStore>),
    ) -> R<Pattern> {
        Ok(match spec {
            PatternSpec::Steady(f) => Pattern::Steady(f.0),
            PatternSpec::Diurnal(d) => {
                let period = d.period.map(|p| p.0).unwrap_or(86400.0);
                if period <= 0.0 {
                    return Err(self.err(&format!("{field}.diurnal.period"), "must be longer than 0s"));
                }
                if d.min.0 > d.max.0 {
                    return Err(self.err(&format!("{field}.diurnal.min"), "is above max"));
                }
                Pattern::Diurnal {
                    min: d.min.0,
                    max: d.max.0,
                    period,
                    peak: d.peak_at.map(|p| p.0).unwrap_or(14.0 * 3600.0),
                }
            }
            PatternSpec::Spikes(s) => {
                if let Some(every) = s.every
                    && every.0 <= s.duration.0
                {
                    return Err(self.err(&format!("{field}.spikes.every"), "must be longer than the spike's duration"));
                }
                Pattern::Spikes {
                    base: s.base.0,
                    level: s.level.0,
                    at: s.at.0,
                    duration: s.duration.0,
                    every: s.every.map(|e| e.0),
                }
            }
            PatternSpec::Planetlab(p) => {
                if is_memory {
                    return Err(self.err(
                        field,
                        "PlanetLab traces have CPU only: give memory a fraction, a pattern or a bitbrains trace",
                    ));
                }
                let store = self.trace_store(&format!("{field}.planetlab.day"), traces)?;
                let samples = store
                    .planetlab(&p.day.0, p.first + member)
                    .map_err(|m| self.err(&format!("{field}.planetlab.day"), m))?;
                Pattern::Trace { samples, scale: self.scale(&format!("{field}.planetlab.scale"), p.scale)? }
            }
            PatternSpec::Bitbrains(b) => {
                let id = b.first.unwrap_or(1) as usize + member;
                if !(1..=500).contains(&id) {
                    return Err(self.err(
                        &format!("{field}.bitbrains.first"),
                        format!("VM {id} does not exist: Bitbrains VMs are 1..=500"),
                    ));
                }
                let store = self.trace_store(&format!("{field}.bitbrains"), traces)?;
                let vm = store.bitbrains(id as u32).map_err(|m| self.err(&format!("{field}.bitbrains.first"), m))?;
                let samples = if is_memory { vm.memory.clone() } else { vm.cpu.clone() };
                Pattern::Trace { samples, scale: self.scale(&format!("{field}.bitbrains.scale"), b.scale)? }
            }
        })
    }

    fn scale(&self, field: &str, s: Option<f64>) -> R<f64> {
        match s {
            None => Ok(1.0),
            Some(v) if v.is_finite() && v > 0.0 => Ok(v),
            Some(v) => Err(self.err(field, format!("{v} is not a positive number"))),
        }
    }

    /// The trace folder, found the first time a trace is used.
    fn trace_store<'s>(&self, field: &str, traces: (&str, usize, &'s mut Option<TraceStore>)) -> R<&'s mut TraceStore> {
        let (dir, samples, store) = traces;
        if store.is_none() {
            let found = find_dir(self.path, dir).ok_or_else(|| {
                self.err(
                    field,
                    format!(
                        "trace folder {dir:?} not found beside the scenario or in any folder above it (set `traces:`)"
                    ),
                )
            })?;
            *store = Some(TraceStore::new(found, samples));
        }
        store.as_mut().ok_or_else(|| self.err(field, "trace folder unavailable"))
    }

    fn vm_group(
        &mut self,
        g: &VmGroup,
        field: &str,
        nodes: &[Node],
        traces: (&str, usize, &mut Option<TraceStore>),
    ) -> R<Vec<VmDef>> {
        let (trace_dir, samples, store) = traces;
        if g.vcpus == 0 {
            return Err(self.err(&format!("{field}.vcpus"), "a VM needs at least 1 vCPU"));
        }
        if g.memory.0 < (1 << 20) {
            return Err(self.err(&format!("{field}.memory"), "a VM needs at least 1Mi of memory"));
        }
        let req = g.requests.unwrap_or_default();
        let lim = g.limits.unwrap_or_default();
        let cpu_req = req.cpu.map(|c| c.0).unwrap_or(g.vcpus as u64 * 100);
        let mem_req = req.memory.map(|m| m.0).unwrap_or(g.memory.0);
        for (what, r, l) in [("cpu", cpu_req, lim.cpu.map(|c| c.0)), ("memory", mem_req, lim.memory.map(|m| m.0))] {
            if let Some(l) = l
                && l < r
            {
                return Err(self.err(
                    &format!("{field}.limits.{what}"),
                    "is below the request: Kubernetes needs limit >= request",
                ));
            }
        }
        let shares = g.shares.unwrap_or_default();
        let (host_cpu, model) = match g.cpu_model.as_deref() {
            None => (None, CpuRequirement::Any),
            Some("host-model") => (Some(HostCpu::Model), CpuRequirement::Any),
            Some("host-passthrough") => (Some(HostCpu::Passthrough), CpuRequirement::Any),
            Some("") => {
                return Err(
                    self.err(&format!("{field}.cpuModel"), "is empty: use a CPU model, host-model or host-passthrough")
                );
            }
            Some(m) => (None, CpuRequirement::Model(m.to_string())),
        };
        let mut placement: Vec<String> = g.node.iter().cloned().collect();
        if !g.nodes.is_empty() {
            if g.node.is_some() {
                return Err(self.err(&format!("{field}.nodes"), "give node or nodes, not both"));
            }
            placement = g.nodes.clone();
        }
        for (i, n) in placement.iter().enumerate() {
            let f = if g.node.is_some() { format!("{field}.node") } else { format!("{field}.nodes[{i}]") };
            if !nodes.iter().any(|x| &x.name == n) {
                return Err(self.err(
                    &f,
                    format!("no node named {n:?}; nodes are {}", list(nodes.iter().map(|n| n.name.as_str()))),
                ));
            }
        }
        let w = g.workload.clone().unwrap_or(WorkloadSpec { cpu: None, memory: None, noise: None, stagger: None });
        let names = self.names(field, &g.name, &g.prefix, g.count)?;
        let mut defs = Vec::new();
        for (member, name) in names.into_iter().enumerate() {
            if !self.vm_names.insert(name.clone()) {
                let f = if g.name.is_some() { format!("{field}.name") } else { format!("{field}.prefix") };
                return Err(self.err(&f, format!("VM {name:?} is defined twice: VM names must be unique")));
            }
            let default = Workload::default();
            let cpu = match &w.cpu {
                Some(p) => {
                    self.pattern(&format!("{field}.workload.cpu"), p, member, false, (trace_dir, samples, &mut *store))?
                }
                None => default.cpu,
            };
            let memory = match &w.memory {
                Some(p) => self.pattern(
                    &format!("{field}.workload.memory"),
                    p,
                    member,
                    true,
                    (trace_dir, samples, &mut *store),
                )?,
                None => default.memory,
            };
            let node = if placement.is_empty() { None } else { Some(placement[member % placement.len()].clone()) };
            let mut cpu_requirement = model.clone();
            if let (Some(kind), Some(n)) = (host_cpu, &node) {
                let host = nodes.iter().find(|x| &x.name == n).and_then(|x| x.host_model.clone()).ok_or_else(|| {
                    self.err(
                        &format!("{field}.cpuModel"),
                        format!(
                            "{} needs the host model of node {n:?}: give its group a generation or hostModel",
                            g.cpu_model.as_deref().unwrap_or("")
                        ),
                    )
                })?;
                cpu_requirement = match kind {
                    HostCpu::Model => CpuRequirement::HostModel(host),
                    HostCpu::Passthrough => CpuRequirement::HostPassthrough(host),
                };
            }
            let mut labels = g.labels.clone();
            labels.entry("kubedrs.io/vm".into()).or_insert_with(|| name.clone());
            let vm = Vm {
                name,
                node,
                namespace: g.namespace.clone().unwrap_or_else(|| "default".into()),
                vcpus: g.vcpus,
                memory_size_bytes: g.memory.0,
                cpu: Allocation {
                    reservation: cpu_req,
                    limit: lim.cpu.map(|c| c.0),
                    shares: shares.cpu.map(|s| s.0).unwrap_or_default(),
                },
                memory: Allocation {
                    reservation: mem_req,
                    limit: lim.memory.map(|m| m.0),
                    shares: shares.memory.map(|s| s.0).unwrap_or_default(),
                },
                demand: Resources::ZERO,
                dirty_rate_bytes_per_sec: g.dirty_rate.map(|d| d.0).unwrap_or(DEFAULT_DIRTY_RATE),
                cpu_requirement,
                labels,
                automation: g.automation.unwrap_or_default(),
                live_migratable: g.live_migratable.unwrap_or(true),
            };
            let workload = Workload {
                cpu,
                memory,
                noise: w.noise.map(|n| n.0).unwrap_or(0.0),
                shift: w.stagger.map(|s| s.0).unwrap_or(0.0) * member as f64,
            };
            defs.push(VmDef {
                vm,
                host_cpu,
                powered_on: g.powered_on.unwrap_or(true),
                workload,
                group: g.name.clone().or_else(|| g.prefix.clone()).unwrap_or_default(),
                origin: field.to_string(),
            });
        }
        Ok(defs)
    }

    fn events(
        &self,
        specs: &[EventSpec],
        duration: u64,
        node_names: &mut BTreeSet<String>,
        groups: &BTreeMap<String, Vec<String>>,
    ) -> R<Vec<Event>> {
        // Check in time order, so a node added by an earlier event can be named by a later one.
        let mut order: Vec<usize> = (0..specs.len()).collect();
        order.sort_by(|a, b| specs[*a].at.0.total_cmp(&specs[*b].at.0).then(a.cmp(b)));
        let mut events = Vec::new();
        for i in order {
            let e = &specs[i];
            let field = format!("events[{i}]");
            let at = self.whole_secs(&format!("{field}.at"), e.at, 0.0)?;
            if at > duration {
                return Err(
                    self.err(&format!("{field}.at"), format!("{at}s is after the end of the run ({duration}s)"))
                );
            }
            let allowed: &[&str] = match e.action {
                Action::EnterMaintenance | Action::ExitMaintenance | Action::FailNode | Action::RecoverNode => {
                    &["node"]
                }
                Action::AddNodes => &["nodes"],
                Action::PowerOn | Action::PowerOff => &["vm", "group"],
                Action::Set => &["vm", "group", "cpuShares", "memoryShares", "requests", "limits"],
            };
            let given = [
                ("node", e.node.is_some()),
                ("nodes", e.nodes.is_some()),
                ("vm", e.vm.is_some()),
                ("group", e.group.is_some()),
                ("cpuShares", e.cpu_shares.is_some()),
                ("memoryShares", e.memory_shares.is_some()),
                ("requests", e.requests.is_some()),
                ("limits", e.limits.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(n, g)| *g && !allowed.contains(n)) {
                return Err(
                    self.err(&format!("{field}.{name}"), format!("{:?} takes only {}", e.action, allowed.join(", ")))
                );
            }
            let node = |s: &Self| -> R<String> {
                let n = e
                    .node
                    .clone()
                    .ok_or_else(|| s.err(&format!("{field}.node"), format!("{:?} needs a node", e.action)))?;
                if !node_names.contains(&n) {
                    return Err(s.err(
                        &format!("{field}.node"),
                        format!("no node named {n:?}; nodes are {}", list(node_names.iter().map(String::as_str))),
                    ));
                }
                Ok(n)
            };
            let vms = |s: &Self| -> R<(Vec<String>, String)> {
                match (&e.vm, &e.group) {
                    (Some(v), None) if s.vm_names.contains(v) => Ok((vec![v.clone()], v.clone())),
                    (Some(v), None) => Err(s.err(&format!("{field}.vm"), format!("no VM named {v:?}"))),
                    (None, Some(g)) => match groups.get(g) {
                        Some(names) => Ok((names.clone(), format!("group {g}"))),
                        None => Err(s.err(
                            &format!("{field}.group"),
                            format!("no VM group named {g:?}; groups are {}", list(groups.keys().map(String::as_str))),
                        )),
                    },
                    _ => Err(s.err(
                        &format!("{field}.vm"),
                        "give vm (one VM) or group (a VM group's name or prefix), one of them",
                    )),
                }
            };
            let kind = match e.action {
                Action::EnterMaintenance => EventKind::EnterMaintenance(node(self)?),
                Action::ExitMaintenance => EventKind::ExitMaintenance(node(self)?),
                Action::FailNode => EventKind::FailNode(node(self)?),
                Action::RecoverNode => EventKind::RecoverNode(node(self)?),
                Action::AddNodes => {
                    let g = e
                        .nodes
                        .as_ref()
                        .ok_or_else(|| self.err(&format!("{field}.nodes"), "addNodes needs a node group"))?;
                    EventKind::AddNodes(self.node_group(g, &format!("{field}.nodes"), node_names)?)
                }
                Action::PowerOn => EventKind::PowerOn(vms(self)?.0),
                Action::PowerOff => EventKind::PowerOff(vms(self)?.0),
                Action::Set => {
                    let (names, target) = vms(self)?;
                    let pair = |r: &Option<ResourcesSpec>| r.map(|r| (r.cpu.map(|c| c.0), r.memory.map(|m| m.0)));
                    let change = Change {
                        cpu_shares: e.cpu_shares.map(|s| s.0),
                        memory_shares: e.memory_shares.map(|s| s.0),
                        requests: pair(&e.requests),
                        limits: pair(&e.limits),
                    };
                    if change == Change::default() {
                        return Err(self.err(
                            &format!("{field}.action"),
                            "set changes nothing: give cpuShares, memoryShares, requests or limits",
                        ));
                    }
                    EventKind::Set { vms: names, target, change }
                }
            };
            events.push(Event { at, kind, origin: field });
        }
        Ok(events)
    }
}

/// `dir` if absolute, else the first `<folder>/<dir>` that is a folder, from the scenario's folder upwards.
fn find_dir(scenario: &Path, dir: &str) -> Option<PathBuf> {
    let d = Path::new(dir);
    if d.is_absolute() {
        return d.is_dir().then(|| d.to_path_buf());
    }
    let folder = scenario.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let start = std::fs::canonicalize(folder).ok()?;
    start.ancestors().map(|a| a.join(d)).find(|p| p.is_dir())
}

/// A short list of names for messages.
fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    if all.len() <= 8 { all.join(", ") } else { format!("{}, ... ({} in all)", all[..6].join(", "), all.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> R<Scenario> {
        Scenario::parse(Path::new("test.yaml"), text)
    }

    const BASE: &str = "duration: 1h\nnodes:\n- prefix: n\n  count: 2\n  cpu: 16\n  memory: 64Gi\n";

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), 90.0);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400.0);
        assert_eq!(parse_duration("2d").unwrap(), 172800.0);
        assert_eq!(parse_duration("250ms").unwrap(), 0.25);
        assert_eq!(parse_duration("02:15").unwrap(), 8100.0);
        assert_eq!(parse_duration("30").unwrap(), 30.0);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-5m").unwrap_err().contains("negative"));
    }

    #[test]
    fn fractions() {
        assert_eq!(parse_fraction("40%").unwrap(), 0.4);
        assert_eq!(parse_fraction("0.25").unwrap(), 0.25);
        assert!(parse_fraction("140%").is_err());
    }

    #[test]
    fn minimal_scenario_expands_groups() {
        let s = parse(&format!("{BASE}vms:\n- prefix: web\n  count: 3\n  vcpus: 2\n  memory: 4Gi\n")).unwrap();
        assert_eq!(s.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["n-1", "n-2"]);
        assert_eq!(s.vms.len(), 3);
        assert_eq!(s.vms[2].vm.name, "web-3");
        assert_eq!(s.vms[0].vm.cpu.reservation, 200, "KubeVirt's default request is vcpus/10");
        assert_eq!(s.vms[0].vm.memory.reservation, 4 << 30);
        assert_eq!((s.step, s.interval, s.duration), (60, 300, 3600));
    }

    #[test]
    fn patterns_parse_in_both_forms() {
        let s = parse(&format!(
            "{BASE}vms:\n- name: a\n  vcpus: 2\n  memory: 4Gi\n  workload:\n    cpu: {{diurnal: {{min: 10%, max: 0.9}}}}\n    memory: 30%\n"
        ))
        .unwrap();
        assert!(matches!(s.vms[0].workload.cpu, Pattern::Diurnal { .. }));
        assert_eq!(s.vms[0].workload.memory, Pattern::Steady(0.3));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("duration: 1h\nnodes: [\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
        assert!(e.to_string().starts_with("test.yaml:"), "{e}");
    }

    #[test]
    fn unknown_field_names_field_line_and_choices() {
        let e = parse(&format!("{BASE}  colour: red\n")).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert_eq!(e.field, "nodes[0]");
        assert!(e.message.contains("unknown field `colour`") && e.message.contains("expected one of"), "{e}");
    }

    #[test]
    fn bad_quantity_points_at_it() {
        let e = parse("duration: 1h\nnodes:\n- name: a\n  cpu: 16\n  memory: -4Gi\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(5), "nodes[0].memory"), "{e}");
        assert!(e.message.contains("negative"), "{e}");
    }

    #[test]
    fn semantic_errors_find_their_line() {
        let e = parse(&format!("{BASE}events:\n- at: 10m\n  action: enterMaintenance\n  node: n-9\n")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(10), "events[0].node"), "{e}");
        assert!(e.message.contains("n-1, n-2"), "{e}");

        let e = parse(&format!("{BASE}pool:\n  migrationThreshold: 7\n")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(8), "pool.migrationThreshold"), "{e}");

        let e =
            parse(&format!("{BASE}vms:\n- name: a\n  vcpus: 1\n  memory: 1Gi\n- name: a\n  vcpus: 1\n  memory: 1Gi\n"))
                .unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(11), "vms[1].name"), "{e}");
        assert!(e.message.contains("twice"), "{e}");
    }

    #[test]
    fn events_may_name_nodes_added_earlier() {
        let ok = format!(
            "{BASE}events:\n- at: 30m\n  action: failNode\n  node: x\n- at: 10m\n  action: addNodes\n  nodes: {{name: x, cpu: 8, memory: 8Gi}}\n"
        );
        let s = parse(&ok).unwrap();
        assert!(matches!(s.events[0].kind, EventKind::AddNodes(_)));
        let bad = ok.replace("at: 30m", "at: 5m");
        assert_eq!(parse(&bad).unwrap_err().field, "events[0].node");
    }
}
