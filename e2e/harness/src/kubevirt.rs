//! What KubeVirt's controllers would write, as pure functions of the objects they read (JSON, so that the
//! emulator does not share kubedrs' typed view of KubeVirt: a wrong field name in kubedrs must show up as
//! a failing scenario, not be mirrored here).
//!
//! The shapes follow KubeVirt v1.6 (`virt-controller`'s VM, VMI and migration controllers, `virt-handler`'s
//! status updates); where this file guesses, `docs/e2e.md` says so.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::quantity::{cpu_millis, mebibytes, memory_bytes};

pub const API_VERSION: &str = "kubevirt.io/v1";
/// Label on virt-launcher pods (`kubevirt.io=virt-launcher`).
pub const APP_LABEL: &str = "kubevirt.io";
/// Label on virt-launcher pods: the VMI's UID.
pub const CREATED_BY: &str = "kubevirt.io/created-by";
/// Label on virt-launcher pods: the VMI's name.
pub const VM_NAME: &str = "vm.kubevirt.io/name";
/// Label on a migration's target pod: the migration's UID.
pub const MIGRATION_JOB_UID: &str = "kubevirt.io/migrationJobUID";
/// Label virt-handler keeps on a VMI: the node it runs on.
pub const NODE_NAME_LABEL: &str = "kubevirt.io/nodeName";
/// Label KubeVirt's migration webhook puts on a VMIM: its VMI.
pub const VMI_NAME_LABEL: &str = "kubevirt.io/vmi-name";
/// Finalizer KubeVirt puts on every VMIM (removed once the migration is cleaned up).
pub const MIGRATION_FINALIZER: &str = "kubevirt.io/migrationJobFinalize";
/// Node label every KubeVirt launcher pod selects.
pub const SCHEDULABLE: &str = "kubevirt.io/schedulable";
pub const CPU_MODEL_PREFIX: &str = "cpu-model.node.kubevirt.io/";
pub const HOST_MODEL_PREFIX: &str = "host-model-cpu.node.kubevirt.io/";
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// KWOK's usage annotations on a pod (read by the emulated kubelet metrics).
pub const KWOK_USAGE_CPU: &str = "kwok.x-k8s.io/usage-cpu";
pub const KWOK_USAGE_MEMORY: &str = "kwok.x-k8s.io/usage-memory";
/// Emulator knobs on a VM template / VMI: the usage its launcher pod reports.
pub const USAGE_CPU: &str = "e2e.kubedrs.io/usage-cpu";
pub const USAGE_MEMORY: &str = "e2e.kubedrs.io/usage-memory";
/// Emulator knob on a VM or VMI: `"true"` makes every migration of it fail.
pub const FAIL_MIGRATION: &str = "e2e.kubedrs.io/fail-migration";
/// Emulator knob on a VM template / VMI: `"false"` makes the VMI not live-migratable (as a VMI with a
/// ReadWriteOnce PVC or a host device would be).
pub const LIVE_MIGRATABLE: &str = "e2e.kubedrs.io/live-migratable";

/// Image the emulated launcher pods name (never pulled: KWOK runs no containers).
pub const LAUNCHER_IMAGE: &str = "quay.io/kubevirt/virt-launcher:v1.6.0";

pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str()
}

pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(at(obj, &["metadata", "labels"]))
}

pub fn annotations(obj: &Value) -> BTreeMap<String, String> {
    string_map(at(obj, &["metadata", "annotations"]))
}

/// Does the VM want a running VMI (`running: true`, or a run strategy that starts it)?
pub fn vm_wants_running(vm: &Value) -> bool {
    match str_at(vm, &["spec", "runStrategy"]) {
        Some(s) => matches!(s, "Always" | "RerunOnFailure" | "Once"),
        None => at(vm, &["spec", "running"]).and_then(Value::as_bool).unwrap_or(false),
    }
}

/// The VMI the VM controller creates from `vm.spec.template` (owner reference to the VM).
pub fn vmi_from_vm(vm: &Value) -> Value {
    let meta = &vm["metadata"];
    let template = &vm["spec"]["template"];
    let mut annotations = template["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
    if let Some(g) = meta["generation"].as_i64() {
        annotations.insert("kubevirt.io/vm-generation".into(), json!(g.to_string()));
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": template["metadata"]["labels"].as_object().cloned().unwrap_or_default(),
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": API_VERSION,
                "kind": "VirtualMachine",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": template["spec"].clone(),
    })
}

/// vCPUs of a VMI: sockets x cores x threads (each default 1).
pub fn vcpus(vmi: &Value) -> i64 {
    let cpu = &vmi["spec"]["domain"]["cpu"];
    ["sockets", "cores", "threads"].iter().map(|k| cpu[*k].as_i64().unwrap_or(1).max(1)).product()
}

/// Guest memory: `memory.guest`, else the memory request.
pub fn guest_memory(vmi: &Value) -> i64 {
    let d = &vmi["spec"]["domain"];
    d["memory"]["guest"]
        .as_str()
        .or_else(|| d["resources"]["requests"]["memory"].as_str())
        .and_then(memory_bytes)
        .unwrap_or(0)
}

/// The CPU model the VMI names; KubeVirt's default (no model, no cluster default) is `host-model`.
pub fn cpu_model(vmi: &Value) -> String {
    str_at(vmi, &["spec", "domain", "cpu", "model"]).filter(|m| !m.is_empty()).unwrap_or("host-model").to_string()
}

/// virt-launcher's memory overhead (an approximation of KubeVirt's `GetMemoryOverhead`: static
/// virt-launcher/virtqemud/qemu footprint, page tables at 1/512 of guest memory, 8 MiB per vCPU, 16 MiB of
/// video RAM), or 0 with `overcommitGuestOverhead`.
pub fn memory_overhead(vmi: &Value) -> i64 {
    if vmi["spec"]["domain"]["resources"]["overcommitGuestOverhead"].as_bool() == Some(true) {
        return 0;
    }
    (210 << 20) + guest_memory(vmi) / 512 + vcpus(vmi) * (8 << 20) + (16 << 20)
}

/// The `compute` container's resources: CPU request = the VMI's, else vCPUs / 10 (KubeVirt's default
/// `cpuAllocationRatio`); memory request = the VMI's request (else guest memory) + overhead; limits likewise
/// when the VMI has them.
pub fn compute_resources(vmi: &Value) -> Value {
    let r = &vmi["spec"]["domain"]["resources"];
    let overhead = memory_overhead(vmi);
    let cpu_req = r["requests"]["cpu"].as_str().and_then(cpu_millis).unwrap_or(vcpus(vmi) * 100);
    let mem_req = r["requests"]["memory"].as_str().and_then(memory_bytes).unwrap_or_else(|| guest_memory(vmi));
    let mut out = json!({"requests": {"cpu": format!("{cpu_req}m"), "memory": mebibytes(mem_req + overhead)}});
    if let Some(c) = r["limits"]["cpu"].as_str().and_then(cpu_millis) {
        out["limits"]["cpu"] = json!(format!("{c}m"));
    }
    if let Some(m) = r["limits"]["memory"].as_str().and_then(memory_bytes) {
        out["limits"]["memory"] = json!(mebibytes(m + overhead));
    }
    out
}

/// Node selector of a launcher pod: `kubevirt.io/schedulable`, the VMI's own selector, and the CPU model's
/// node label when the VMI names a model (`host-model` and `host-passthrough` get none at start).
pub fn launcher_node_selector(vmi: &Value) -> BTreeMap<String, String> {
    let mut sel = BTreeMap::from([(SCHEDULABLE.to_string(), "true".to_string())]);
    sel.extend(string_map(vmi["spec"].get("nodeSelector")));
    let model = cpu_model(vmi);
    if model != "host-model" && model != "host-passthrough" {
        sel.insert(format!("{CPU_MODEL_PREFIX}{model}"), "true".into());
    }
    sel
}

/// The usage a new launcher pod of `vmi` reports: the VMI's `e2e.kubedrs.io/usage-*` annotations, else
/// 100m per vCPU and all of the guest memory (a busy-memory, idle-CPU guest).
pub fn initial_usage(vmi: &Value) -> (String, String) {
    let a = annotations(vmi);
    let cpu = a.get(USAGE_CPU).cloned().unwrap_or_else(|| format!("{}m", vcpus(vmi) * 100));
    let mem = a.get(USAGE_MEMORY).cloned().unwrap_or_else(|| mebibytes(guest_memory(vmi).max(1 << 20)));
    (cpu, mem)
}

/// The virt-launcher pod of `vmi` (owner: the VMI), reporting `usage` through KWOK's annotations.
pub fn launcher_pod(vmi: &Value, usage: Option<(String, String)>) -> Value {
    let meta = &vmi["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let mut labels = labels(vmi);
    labels.insert(APP_LABEL.into(), "virt-launcher".into());
    labels.insert(CREATED_BY.into(), meta["uid"].as_str().unwrap_or_default().into());
    labels.insert(VM_NAME.into(), name.into());
    let mut annotations = BTreeMap::from([
        ("kubevirt.io/domain".to_string(), name.to_string()),
        ("kubectl.kubernetes.io/default-container".to_string(), "compute".to_string()),
    ]);
    if let Some((cpu, mem)) = usage {
        annotations.insert(KWOK_USAGE_CPU.into(), cpu);
        annotations.insert(KWOK_USAGE_MEMORY.into(), mem);
    }
    let spec = &vmi["spec"];
    let grace = spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(30) + 15;
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("virt-launcher-{name}-"),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": API_VERSION,
                "kind": "VirtualMachineInstance",
                "name": name,
                "uid": meta["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "containers": [{
                "name": "compute",
                "image": LAUNCHER_IMAGE,
                "command": ["/usr/bin/virt-launcher-monitor"],
                "resources": compute_resources(vmi),
            }],
            "nodeSelector": launcher_node_selector(vmi),
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": grace,
            "automountServiceAccountToken": false,
        },
    });
    for (from, to) in [("schedulerName", "schedulerName"), ("affinity", "affinity"), ("tolerations", "tolerations")] {
        if let Some(v) = spec.get(from).filter(|v| !v.is_null()) {
            pod["spec"][to] = v.clone();
        }
    }
    pod
}

/// The target pod of migration `vmim` for `vmi`: the launcher pod plus the migration's label, the
/// `addedNodeSelector` (keys the VMI already selects keep the VMI's value), the source's host model for a
/// `host-model` VMI, and a required anti-affinity to the VMI's other pods per hostname (never the source
/// node). It reports no usage until the guest is handed over.
pub fn target_pod(vmi: &Value, vmim: &Value, source_host_model: Option<&str>) -> Value {
    let mut pod = launcher_pod(vmi, None);
    let uid = vmim["metadata"]["uid"].as_str().unwrap_or_default();
    pod["metadata"]["labels"][MIGRATION_JOB_UID] = json!(uid);
    let mut sel = launcher_node_selector(vmi);
    for (k, v) in string_map(vmim["spec"].get("addedNodeSelector")) {
        sel.entry(k).or_insert(v);
    }
    if cpu_model(vmi) == "host-model"
        && let Some(m) = source_host_model
    {
        sel.insert(format!("{HOST_MODEL_PREFIX}{m}"), "true".into());
    }
    pod["spec"]["nodeSelector"] = json!(sel);
    let term = json!({
        "labelSelector": {"matchExpressions": [{
            "key": CREATED_BY, "operator": "In", "values": [vmi["metadata"]["uid"]],
        }]},
        "topologyKey": HOSTNAME,
    });
    let affinity = pod["spec"]["affinity"].as_object().cloned().unwrap_or_default();
    let mut affinity = Value::Object(affinity);
    let terms = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut terms = terms;
    terms.push(term);
    affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!(terms);
    pod["spec"]["affinity"] = affinity;
    pod
}

/// Does `node`'s label set satisfy `pod`'s `nodeSelector` (what the kubelet re-checks at admission)?
pub fn node_matches_selector(node_labels: &BTreeMap<String, String>, pod: &Value) -> Result<(), String> {
    for (k, v) in string_map(pod["spec"].get("nodeSelector")) {
        if node_labels.get(&k) != Some(&v) {
            return Err(format!("node lacks {k}={v}"));
        }
    }
    Ok(())
}

/// How long the memory copy of a migration takes at `rate_mib_s`.
pub fn migration_copy_secs(vmi: &Value, rate_mib_s: f64) -> f64 {
    let mib = guest_memory(vmi) as f64 / 1048576.0;
    if rate_mib_s <= 0.0 { 0.0 } else { mib / rate_mib_s }
}

/// Is the VMI live-migratable (`LiveMigratable` condition)? False only when asked through the emulator
/// annotation.
pub fn live_migratable(vmi: &Value) -> bool {
    annotations(vmi).get(LIVE_MIGRATABLE).map(String::as_str) != Some("false")
}

/// Must a migration of this VMI (or its VM) fail?
pub fn must_fail(vmi: &Value, vm: Option<&Value>) -> bool {
    let asks = |o: &Value| annotations(o).get(FAIL_MIGRATION).map(String::as_str) == Some("true");
    asks(vmi) || vm.is_some_and(asks)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vm() -> Value {
        json!({
            "apiVersion": API_VERSION, "kind": "VirtualMachine",
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "vm-uid", "generation": 1},
            "spec": {"runStrategy": "Always", "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {USAGE_CPU: "750m"}},
                "spec": {
                    "schedulerName": "kubedrs",
                    "nodeSelector": {"disk": "ssd"},
                    "domain": {"cpu": {"cores": 2, "model": "Broadwell-noTSX"}, "memory": {"guest": "4Gi"},
                               "devices": {}},
                },
            }},
        })
    }

    fn vmi() -> Value {
        let mut v = vmi_from_vm(&vm());
        v["metadata"]["uid"] = json!("vmi-uid");
        v
    }

    #[test]
    fn a_vm_gets_a_vmi_owned_by_it() {
        let v = vmi_from_vm(&vm());
        assert_eq!(v["metadata"]["name"], "web-1");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "VirtualMachine");
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "vm-uid");
        assert_eq!(v["metadata"]["labels"]["app"], "web");
        assert_eq!(v["spec"]["schedulerName"], "kubedrs");
        assert!(vm_wants_running(&vm()));
        assert!(!vm_wants_running(&json!({"spec": {"runStrategy": "Halted", "running": true}})));
        assert!(vm_wants_running(&json!({"spec": {"running": true}})));
        assert!(!vm_wants_running(&json!({"spec": {"runStrategy": "Manual"}})));
    }

    #[test]
    fn the_launcher_pod_is_what_kubevirt_would_create() {
        let p = launcher_pod(&vmi(), Some(initial_usage(&vmi())));
        assert_eq!(p["metadata"]["generateName"], "virt-launcher-web-1-");
        assert_eq!(p["metadata"]["labels"]["kubevirt.io"], "virt-launcher");
        assert_eq!(p["metadata"]["labels"]["kubevirt.io/created-by"], "vmi-uid");
        assert_eq!(p["metadata"]["labels"]["vm.kubevirt.io/name"], "web-1");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "VirtualMachineInstance");
        assert_eq!(p["spec"]["schedulerName"], "kubedrs");
        assert_eq!(p["spec"]["containers"][0]["name"], "compute");
        // 2 vCPUs / 10, 4 GiB + (210 + 8 + 16 + 16) MiB.
        assert_eq!(p["spec"]["containers"][0]["resources"]["requests"]["cpu"], "200m");
        assert_eq!(p["spec"]["containers"][0]["resources"]["requests"]["memory"], "4346Mi");
        assert_eq!(p["spec"]["nodeSelector"]["disk"], "ssd");
        assert_eq!(p["spec"]["nodeSelector"]["kubevirt.io/schedulable"], "true");
        assert_eq!(p["spec"]["nodeSelector"]["cpu-model.node.kubevirt.io/Broadwell-noTSX"], "true");
        assert_eq!(p["metadata"]["annotations"][KWOK_USAGE_CPU], "750m");
        assert_eq!(p["metadata"]["annotations"][KWOK_USAGE_MEMORY], "4096Mi");
    }

    #[test]
    fn host_model_vmis_get_no_cpu_selector_at_start_and_the_source_host_model_on_migration() {
        let mut v = vmi();
        v["spec"]["domain"]["cpu"].as_object_mut().unwrap().remove("model");
        assert!(launcher_node_selector(&v).keys().all(|k| !k.starts_with(CPU_MODEL_PREFIX)));
        let m = json!({"metadata": {"uid": "m-uid"},
                       "spec": {"vmiName": "web-1", "addedNodeSelector": {HOSTNAME: "n2", "disk": "hdd"}}});
        let t = target_pod(&v, &m, Some("Icelake-Server"));
        assert_eq!(t["spec"]["nodeSelector"][HOSTNAME], "n2");
        assert_eq!(t["spec"]["nodeSelector"]["disk"], "ssd", "the VMI's own selector wins");
        assert_eq!(t["spec"]["nodeSelector"]["host-model-cpu.node.kubevirt.io/Icelake-Server"], "true");
        assert_eq!(t["metadata"]["labels"][MIGRATION_JOB_UID], "m-uid");
        assert!(t["metadata"]["annotations"].get(KWOK_USAGE_CPU).is_none());
        let term = &t["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(term["topologyKey"], HOSTNAME);
        assert_eq!(term["labelSelector"]["matchExpressions"][0]["values"][0], "vmi-uid");
    }

    #[test]
    fn kubelet_admission_checks_the_node_selector() {
        let p = launcher_pod(&vmi(), None);
        let mut labels: BTreeMap<String, String> =
            [(SCHEDULABLE, "true"), ("disk", "ssd"), ("cpu-model.node.kubevirt.io/Broadwell-noTSX", "true")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert!(node_matches_selector(&labels, &p).is_ok());
        labels.remove("disk");
        assert_eq!(node_matches_selector(&labels, &p), Err("node lacks disk=ssd".into()));
    }

    #[test]
    fn migrations_take_time_in_proportion_to_memory_and_can_be_made_to_fail() {
        assert!((migration_copy_secs(&vmi(), 1024.0) - 4.0).abs() < 1e-9);
        let mut v = vmi();
        assert!(!must_fail(&v, None));
        v["metadata"]["annotations"][FAIL_MIGRATION] = json!("true");
        assert!(must_fail(&v, None));
        assert!(live_migratable(&v));
        v["metadata"]["annotations"][LIVE_MIGRATABLE] = json!("false");
        assert!(!live_migratable(&v));
    }
}
