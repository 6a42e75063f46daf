//! The file as written: serde types, unknown fields refused.

use kubedrs_engine::{Automation, Enforcement, Labels, SelectorOperator, VmAutomation};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

use super::*;

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
