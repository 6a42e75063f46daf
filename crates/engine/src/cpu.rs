//! CPU compatibility, the EVC of kubedrs: the pool baseline and the VMs a CPU model pins.
//!
//! KubeVirt's node-labeller marks every node with the named models it can run. The baseline is the newest
//! model, in the generation order below, that every node of the pool lists. The order is QEMU's x86 model
//! list per vendor, oldest first; a security variant (`-IBRS`, `-noTSX`) sits right after its base model,
//! since it needs the base's features and more microcode support. Models not in the table (vendor-neutral
//! ones like `qemu64`, or names unknown to this release) never become the baseline but still count for
//! compatibility.

use std::collections::HashMap;

use super::model::{CpuBaselinePolicy, CpuRequirement, Node, Vm};
use super::plan::{Baseline, PinnedVm};

/// Intel models, oldest first.
pub const INTEL_MODELS: &[&str] = &[
    "Conroe",
    "Penryn",
    "Nehalem",
    "Nehalem-IBRS",
    "Westmere",
    "Westmere-IBRS",
    "SandyBridge",
    "SandyBridge-IBRS",
    "IvyBridge",
    "IvyBridge-IBRS",
    "Haswell-noTSX",
    "Haswell-noTSX-IBRS",
    "Haswell",
    "Haswell-IBRS",
    "Broadwell-noTSX",
    "Broadwell-noTSX-IBRS",
    "Broadwell",
    "Broadwell-IBRS",
    "Skylake-Client",
    "Skylake-Client-IBRS",
    "Skylake-Client-noTSX-IBRS",
    "Skylake-Server",
    "Skylake-Server-IBRS",
    "Skylake-Server-noTSX-IBRS",
    "Cascadelake-Server",
    "Cascadelake-Server-noTSX",
    "Cooperlake",
    "Icelake-Client",
    "Icelake-Client-noTSX",
    "Icelake-Server",
    "Icelake-Server-noTSX",
    "SapphireRapids",
    "GraniteRapids",
];

/// AMD models, oldest first.
pub const AMD_MODELS: &[&str] = &[
    "Opteron_G1",
    "Opteron_G2",
    "Opteron_G3",
    "Opteron_G4",
    "Opteron_G5",
    "EPYC",
    "EPYC-IBPB",
    "EPYC-Rome",
    "EPYC-Milan",
    "EPYC-Genoa",
];

/// (vendor, rank) of a known model.
pub fn generation(model: &str) -> Option<(&'static str, usize)> {
    if let Some(i) = INTEL_MODELS.iter().position(|m| *m == model) {
        return Some(("Intel", i));
    }
    AMD_MODELS.iter().position(|m| *m == model).map(|i| ("AMD", i))
}

/// Every known model of the vendor up to and including `newest`, as a node of that generation lists them.
pub fn models_up_to(newest: &str) -> Vec<String> {
    match generation(newest) {
        Some(("Intel", i)) => INTEL_MODELS[..=i].iter().map(|s| s.to_string()).collect(),
        Some((_, i)) => AMD_MODELS[..=i].iter().map(|s| s.to_string()).collect(),
        None => vec![newest.to_string()],
    }
}

/// The pool's baseline under `policy`, from the nodes that are part of the pool.
pub fn resolve_baseline(policy: &CpuBaselinePolicy, nodes: &[Node]) -> (Option<String>, Option<String>) {
    if nodes.is_empty() {
        return (None, Some("the pool has no nodes".into()));
    }
    if let CpuBaselinePolicy::Model(model) = policy {
        let mut lacking: Vec<&str> =
            nodes.iter().filter(|n| !n.cpu_models.contains(model)).map(|n| n.name.as_str()).collect();
        lacking.sort();
        return if lacking.is_empty() {
            (Some(model.clone()), None)
        } else {
            (None, Some(format!("cpuBaseline {model} is not supported by node(s) {}", lacking.join(", "))))
        };
    }
    let mut common = nodes[0].cpu_models.clone();
    for n in &nodes[1..] {
        common.retain(|m| n.cpu_models.contains(m));
    }
    let best = common.iter().filter_map(|m| generation(m).map(|g| (g, m))).max_by_key(|(g, _)| g.1);
    match best {
        Some((_, m)) => (Some(m.clone()), None),
        None if nodes.iter().all(|n| n.cpu_models.is_empty()) => {
            (None, Some("no node reports CPU models (cpu-model.node.kubevirt.io labels)".into()))
        }
        None => {
            let vendors: std::collections::BTreeSet<&str> =
                nodes.iter().filter_map(|n| n.cpu_vendor.as_deref()).collect();
            if vendors.len() > 1 {
                let v: Vec<&str> = vendors.into_iter().collect();
                (None, Some(format!("the pool mixes CPU vendors ({}): no model runs on every node", v.join(", "))))
            } else {
                (None, Some("no known CPU model is supported by every node".into()))
            }
        }
    }
}

/// A short name of what the requirement asks, for reports.
pub fn describe(req: &CpuRequirement) -> Option<String> {
    match req {
        CpuRequirement::Any => None,
        CpuRequirement::Model(m) => Some(m.clone()),
        CpuRequirement::HostModel(m) => Some(format!("host-model ({m})")),
        CpuRequirement::HostPassthrough(m) => Some(format!("host-passthrough ({m})")),
    }
}

/// Baseline plus the VMs whose CPU model lets them run on only part of the pool.
pub fn baseline_report(policy: &CpuBaselinePolicy, nodes: &[Node], vms: &[Vm]) -> Baseline {
    let pool_nodes: Vec<Node> = nodes.iter().filter(|n| !n.state.in_maintenance()).cloned().collect();
    let (model, why) = resolve_baseline(policy, if pool_nodes.is_empty() { nodes } else { &pool_nodes });
    // The nodes that can run a requirement, counted once per distinct requirement: VMs share a handful of
    // models, and counting per VM costs VMs x nodes (10 million checks at 10,000 VMs on 1,000 nodes).
    let mut eligible_of: HashMap<&CpuRequirement, usize> = HashMap::new();
    let mut pinned: Vec<PinnedVm> = vms
        .iter()
        .filter_map(|vm| {
            let model = describe(&vm.cpu_requirement)?;
            let req = &vm.cpu_requirement;
            let eligible = *eligible_of.entry(req).or_insert_with(|| nodes.iter().filter(|n| req.allows(n)).count());
            (eligible < nodes.len()).then(|| PinnedVm { vm: vm.name.clone(), model, eligible_nodes: eligible })
        })
        .collect();
    pinned.sort_by(|a, b| a.vm.cmp(&b.vm));
    Baseline { model, why, pinned }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, newest: &str, vendor: &str) -> Node {
        Node {
            name: name.into(),
            cpu_vendor: Some(vendor.into()),
            cpu_models: models_up_to(newest).into_iter().collect(),
            host_model: Some(newest.into()),
            ..Default::default()
        }
    }

    #[test]
    fn auto_baseline_is_newest_common_model() {
        let nodes = [
            node("a", "Skylake-Server", "Intel"),
            node("b", "Haswell-noTSX", "Intel"),
            node("c", "Icelake-Server", "Intel"),
        ];
        let (m, why) = resolve_baseline(&CpuBaselinePolicy::Auto, &nodes);
        assert_eq!(m.as_deref(), Some("Haswell-noTSX"), "{why:?}");
    }

    #[test]
    fn mixed_vendors_have_no_baseline_and_say_why() {
        let nodes = [node("a", "Skylake-Server", "Intel"), node("b", "EPYC-Rome", "AMD")];
        let (m, why) = resolve_baseline(&CpuBaselinePolicy::Auto, &nodes);
        assert_eq!(m, None);
        assert!(why.unwrap().contains("mixes CPU vendors"));
    }

    #[test]
    fn fixed_baseline_names_nodes_that_lack_it() {
        let nodes = [node("a", "Skylake-Server", "Intel"), node("b", "Haswell-noTSX", "Intel")];
        let (m, why) = resolve_baseline(&CpuBaselinePolicy::Model("Skylake-Server".into()), &nodes);
        assert_eq!(m, None);
        assert!(why.unwrap().contains("node(s) b"));
    }

    #[test]
    fn a_new_model_pins_a_vm_to_new_nodes() {
        let nodes = [node("a", "Icelake-Server", "Intel"), node("b", "Haswell-noTSX", "Intel")];
        let vm = Vm {
            name: "v".into(),
            cpu_requirement: CpuRequirement::Model("Icelake-Server".into()),
            ..Default::default()
        };
        let report = baseline_report(&CpuBaselinePolicy::Auto, &nodes, &[vm]);
        assert_eq!(report.pinned, vec![PinnedVm { vm: "v".into(), model: "Icelake-Server".into(), eligible_nodes: 1 }]);
    }
}
