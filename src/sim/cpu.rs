//! A small table of CPU generations, so that a scenario can say `generation: Haswell` and get the KubeVirt CPU
//! models (`cpu-model.node.kubevirt.io/<Model>`) and host model that KubeVirt's node-labeller would report on
//! such a node. Each vendor's generations are listed oldest first; a node supports every model of its own
//! generation and of the older ones of the same vendor.

use std::collections::BTreeSet;

/// One CPU generation and the KubeVirt model names it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    pub name: &'static str,
    pub vendor: &'static str,
    /// Models this generation adds to the older ones (libvirt/QEMU names, as KubeVirt labels them).
    pub models: &'static [&'static str],
    /// `host-model-cpu.node.kubevirt.io/<Model>` on such a node.
    pub host_model: &'static str,
}

const fn g(
    name: &'static str,
    vendor: &'static str,
    models: &'static [&'static str],
    host_model: &'static str,
) -> Generation {
    Generation { name, vendor, models, host_model }
}

/// Oldest first within a vendor. TSX is off on most Haswell/Broadwell and later hosts (microcode), hence `-noTSX`.
pub const GENERATIONS: &[Generation] = &[
    g("Nehalem", "Intel", &["Nehalem", "Nehalem-IBRS"], "Nehalem-IBRS"),
    g("Westmere", "Intel", &["Westmere", "Westmere-IBRS"], "Westmere-IBRS"),
    g("SandyBridge", "Intel", &["SandyBridge", "SandyBridge-IBRS"], "SandyBridge-IBRS"),
    g("IvyBridge", "Intel", &["IvyBridge", "IvyBridge-IBRS"], "IvyBridge-IBRS"),
    g("Haswell", "Intel", &["Haswell-noTSX", "Haswell-noTSX-IBRS"], "Haswell-noTSX-IBRS"),
    g("Broadwell", "Intel", &["Broadwell-noTSX", "Broadwell-noTSX-IBRS"], "Broadwell-noTSX-IBRS"),
    g("Skylake", "Intel", &["Skylake-Client-noTSX-IBRS", "Skylake-Server-noTSX-IBRS"], "Skylake-Server-noTSX-IBRS"),
    g("Cascadelake", "Intel", &["Cascadelake-Server-noTSX"], "Cascadelake-Server-noTSX"),
    g("Icelake", "Intel", &["Icelake-Server-noTSX"], "Icelake-Server-noTSX"),
    g("SapphireRapids", "Intel", &["SapphireRapids"], "SapphireRapids"),
    g("Naples", "AMD", &["Opteron_G1", "Opteron_G2", "Opteron_G3", "EPYC", "EPYC-IBPB"], "EPYC-IBPB"),
    g("Rome", "AMD", &["EPYC-Rome"], "EPYC-Rome"),
    g("Milan", "AMD", &["EPYC-Milan"], "EPYC-Milan"),
    g("Genoa", "AMD", &["EPYC-Genoa"], "EPYC-Genoa"),
];

/// The generation named `name` (case-insensitive).
pub fn generation(name: &str) -> Option<&'static Generation> {
    GENERATIONS.iter().find(|g| g.name.eq_ignore_ascii_case(name))
}

/// Every model a node of `generation` supports: its own and those of the older ones of its vendor.
pub fn models_up_to(generation: &Generation) -> BTreeSet<String> {
    GENERATIONS
        .iter()
        .filter(|g| g.vendor == generation.vendor)
        .take_while(|g| g.name != generation.name)
        .chain(std::iter::once(generation))
        .flat_map(|g| g.models.iter().map(|m| m.to_string()))
        .collect()
}

/// The generation names, for error messages.
pub fn names() -> String {
    GENERATIONS.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_node_runs_older_models_of_its_vendor_only() {
        let skylake = models_up_to(generation("skylake").unwrap());
        assert!(skylake.contains("Haswell-noTSX"));
        assert!(skylake.contains("Skylake-Server-noTSX-IBRS"));
        assert!(!skylake.contains("Cascadelake-Server-noTSX"));
        assert!(!skylake.contains("EPYC"));
        let haswell = models_up_to(generation("Haswell").unwrap());
        assert!(!haswell.contains("Broadwell-noTSX"));
        assert!(models_up_to(generation("Milan").unwrap()).contains("EPYC-Rome"));
        assert!(generation("Pentium").is_none());
    }
}
