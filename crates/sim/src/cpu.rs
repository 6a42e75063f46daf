//! CPU generations for scenario files: `generation: Haswell` gives a node the KubeVirt CPU models
//! (`cpu-model.node.kubevirt.io/<Model>`) and host model that KubeVirt's node-labeller would report on such a
//! node. The models come from the engine's own model order ([`kubedrs_engine::cpu::models_up_to`]), so the
//! simulator and the engine agree on what a generation runs; this table only names each generation's newest model.

use kubedrs_engine::cpu::{generation as model_rank, models_up_to};
use std::collections::BTreeSet;

/// A CPU generation: its newest KubeVirt model, which is also the node's host model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    pub name: &'static str,
    pub newest: &'static str,
}

/// Oldest first within a vendor. TSX is off on most Haswell and later hosts (microcode), hence `-noTSX`.
pub const GENERATIONS: &[Generation] = &[
    Generation { name: "Nehalem", newest: "Nehalem-IBRS" },
    Generation { name: "Westmere", newest: "Westmere-IBRS" },
    Generation { name: "SandyBridge", newest: "SandyBridge-IBRS" },
    Generation { name: "IvyBridge", newest: "IvyBridge-IBRS" },
    Generation { name: "Haswell", newest: "Haswell-noTSX-IBRS" },
    Generation { name: "Broadwell", newest: "Broadwell-noTSX-IBRS" },
    Generation { name: "Skylake", newest: "Skylake-Server-noTSX-IBRS" },
    Generation { name: "Cascadelake", newest: "Cascadelake-Server-noTSX" },
    Generation { name: "Icelake", newest: "Icelake-Server-noTSX" },
    Generation { name: "SapphireRapids", newest: "SapphireRapids" },
    Generation { name: "Naples", newest: "EPYC-IBPB" },
    Generation { name: "Rome", newest: "EPYC-Rome" },
    Generation { name: "Milan", newest: "EPYC-Milan" },
    Generation { name: "Genoa", newest: "EPYC-Genoa" },
];

impl Generation {
    /// `Intel` or `AMD`, as `cpu-vendor.node.kubevirt.io/<Vendor>`.
    pub fn vendor(&self) -> &'static str {
        model_rank(self.newest).map_or("Intel", |(vendor, _)| vendor)
    }

    /// Every model such a node runs: its newest and all older ones of its vendor.
    pub fn models(&self) -> BTreeSet<String> {
        models_up_to(self.newest).into_iter().collect()
    }
}

/// The generation named `name` (case-insensitive).
pub fn generation(name: &str) -> Option<&'static Generation> {
    GENERATIONS.iter().find(|g| g.name.eq_ignore_ascii_case(name))
}

/// The generation names, for error messages.
pub fn names() -> String {
    GENERATIONS.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generation_is_known_to_the_engine() {
        for g in GENERATIONS {
            assert!(model_rank(g.newest).is_some(), "{}", g.newest);
        }
    }

    #[test]
    fn a_newer_node_runs_older_models_of_its_vendor_only() {
        let skylake = generation("skylake").unwrap().models();
        assert!(skylake.contains("Haswell-noTSX"));
        assert!(skylake.contains("Skylake-Server-noTSX-IBRS"));
        assert!(!skylake.contains("Cascadelake-Server-noTSX"));
        assert!(!skylake.contains("EPYC"));
        assert!(!generation("Haswell").unwrap().models().contains("Broadwell-noTSX"));
        assert!(generation("Milan").unwrap().models().contains("EPYC-Rome"));
        assert_eq!(generation("Rome").unwrap().vendor(), "AMD");
        assert!(generation("Pentium").is_none());
    }
}
