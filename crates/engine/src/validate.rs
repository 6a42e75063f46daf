//! Checks a snapshot before planning: every refusal names the field (a path such as `vms[3].node`) and says
//! what is allowed. "No feasible plan" is not an error (the plan says why); a malformed snapshot is.

use super::model::Snapshot;
use super::plan::InvalidSnapshot;
use std::collections::{BTreeMap, BTreeSet};

pub fn validate(s: &Snapshot) -> Result<(), InvalidSnapshot> {
    let err = |field: String, message: String| Err(InvalidSnapshot::new(field, message));
    let p = &s.pool;
    if !(1..=5).contains(&p.migration_threshold) {
        return err(
            "pool.migration_threshold".into(),
            format!(
                "{} is out of range: allowed 1 (mandatory moves only) to 5 (most aggressive)",
                p.migration_threshold
            ),
        );
    }
    if p.concurrency.per_pool == 0 {
        return err("pool.concurrency.per_pool".into(), "must be at least 1".into());
    }
    if p.concurrency.per_node_outbound == 0 {
        return err("pool.concurrency.per_node_outbound".into(), "must be at least 1".into());
    }
    if p.concurrency.per_node_inbound == Some(0) {
        return err("pool.concurrency.per_node_inbound".into(), "must be at least 1, or unset for no limit".into());
    }
    if p.migration_bandwidth_bytes_per_sec == 0 {
        return err("pool.migration_bandwidth_bytes_per_sec".into(), "must be more than 0".into());
    }

    let mut nodes = BTreeSet::new();
    for (i, n) in s.nodes.iter().enumerate() {
        if n.name.is_empty() {
            return err(format!("nodes[{i}].name"), "must not be empty".into());
        }
        if !nodes.insert(n.name.as_str()) {
            return err(format!("nodes[{i}].name"), format!("duplicate node {:?}: node names must be unique", n.name));
        }
        if n.capacity.cpu_millis == 0 {
            return err(
                format!("nodes[{i}].capacity.cpu_millis"),
                format!("node {:?} has no CPU capacity: must be more than 0", n.name),
            );
        }
        if n.capacity.memory_bytes == 0 {
            return err(
                format!("nodes[{i}].capacity.memory_bytes"),
                format!("node {:?} has no memory capacity: must be more than 0", n.name),
            );
        }
    }

    let mut vms = BTreeSet::new();
    for (i, vm) in s.vms.iter().enumerate() {
        if vm.name.is_empty() {
            return err(format!("vms[{i}].name"), "must not be empty".into());
        }
        if !vms.insert(vm.name.as_str()) {
            return err(
                format!("vms[{i}].name"),
                format!("duplicate VM {:?}: VM names must be unique in a pool", vm.name),
            );
        }
        if let Some(node) = &vm.node
            && !nodes.contains(node.as_str())
        {
            return err(
                format!("vms[{i}].node"),
                format!("VM {:?} runs on unknown node {node:?}: not a node of this pool", vm.name),
            );
        }
        if vm.vcpus == 0 {
            return err(format!("vms[{i}].vcpus"), format!("VM {:?} has 0 vCPUs: must be at least 1", vm.name));
        }
        for (res, a) in [("cpu", &vm.cpu), ("memory", &vm.memory)] {
            if let Some(limit) = a.limit
                && limit < a.reservation
            {
                return err(
                    format!("vms[{i}].{res}.limit"),
                    format!(
                        "VM {:?}: limit {limit} is below its reservation {}: a limit must be at least the reservation",
                        vm.name, a.reservation
                    ),
                );
            }
        }
    }

    let mut rules = BTreeSet::new();
    for (i, r) in s.rules.iter().enumerate() {
        if r.name.is_empty() {
            return err(format!("rules[{i}].name"), "must not be empty".into());
        }
        if !rules.insert(r.name.as_str()) {
            return err(format!("rules[{i}].name"), format!("duplicate rule {:?}: rule names must be unique", r.name));
        }
    }

    let mut migrating: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in s.in_flight.iter().enumerate() {
        if !vms.contains(m.vm.as_str()) {
            return err(format!("in_flight[{i}].vm"), format!("unknown VM {:?}", m.vm));
        }
        for (field, node) in [("source", &m.source), ("target", &m.target)] {
            // An empty target: not scheduled yet.
            let unscheduled = field == "target" && node.is_empty();
            if !unscheduled && !nodes.contains(node.as_str()) {
                return err(format!("in_flight[{i}].{field}"), format!("unknown node {node:?}"));
            }
        }
        if let Some(first) = migrating.insert(m.vm.as_str(), i) {
            return err(
                format!("in_flight[{i}].vm"),
                format!("VM {:?} is already migrating (in_flight[{first}]): one migration per VM", m.vm),
            );
        }
    }
    Ok(())
}
