//! KubeVirt's objects as the node emulator and the scenarios read them: names, labels and annotations,
//! small pure functions of the JSON (so that the harness does not share kubedrs' typed view of KubeVirt: a
//! wrong field name in kubedrs must show up as a failing scenario, not be mirrored here), and the watches
//! the node emulator keeps.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;
use tokio::sync::Notify;

use crate::quantity::{mebibytes, memory_bytes};

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
/// Node label every KubeVirt launcher pod selects.
pub const SCHEDULABLE: &str = "kubevirt.io/schedulable";
/// The node label a migration's `addedNodeSelector` names its target with.
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// KWOK's usage annotations on a pod (read by the emulated kubelet metrics).
pub const KWOK_USAGE_CPU: &str = "kwok.x-k8s.io/usage-cpu";
pub const KWOK_USAGE_MEMORY: &str = "kwok.x-k8s.io/usage-memory";
/// Scenario knobs on a VM template / VMI: the usage its launcher pod reports.
pub const USAGE_CPU: &str = "e2e.kubedrs.io/usage-cpu";
pub const USAGE_MEMORY: &str = "e2e.kubedrs.io/usage-memory";
/// Node emulator knob on a VM or VMI: `"true"` makes every migration of it fail.
pub const FAIL_MIGRATION: &str = "e2e.kubedrs.io/fail-migration";
/// Node emulator knob on a VM template / VMI: `"false"` makes the VMI not live-migratable (as a VMI with a
/// ReadWriteOnce PVC or a host device would be).
pub const LIVE_MIGRATABLE: &str = "e2e.kubedrs.io/live-migratable";

pub fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubevirt.io", "v1", kind), plural)
}

pub fn vm_resource() -> ApiResource {
    resource("VirtualMachine", "virtualmachines")
}
pub fn vmi_resource() -> ApiResource {
    resource("VirtualMachineInstance", "virtualmachineinstances")
}
pub fn vmim_resource() -> ApiResource {
    resource("VirtualMachineInstanceMigration", "virtualmachineinstancemigrations")
}

/// The stores keep no managed fields: nothing reads them, they are 40% of a launcher pod's JSON (thousands of
/// pods at scale), and an update without them keeps the server's (the API server resets them only when asked).
fn drop_managed_fields<K: kube::Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// A store of `api`'s objects kept by a watch; `notify` fires on every change.
pub fn dyn_reflector(api: Api<DynamicObject>, ar: ApiResource, notify: &Arc<Notify>) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::new(ar);
    let reader = writer.as_reader();
    let notify = notify.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(
            watcher(api, watcher::Config::default()).default_backoff().modify(drop_managed_fields).reflect(writer)
        );
        while let Some(ev) = s.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::warn!(error = %e, "watch error"),
            }
        }
    });
    reader
}

/// [`dyn_reflector`] for a typed resource, with a watch configuration (e.g. a label selector).
pub fn typed_reflector<K>(api: Api<K>, cfg: watcher::Config, notify: &Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let notify = notify.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(watcher(api, cfg).default_backoff().modify(drop_managed_fields).reflect(writer));
        while let Some(ev) = s.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::warn!(error = %e, "watch error"),
            }
        }
    });
    reader
}

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

/// The usage a new launcher pod of `vmi` (or of a VM template) reports: the `e2e.kubedrs.io/usage-*`
/// annotations, else 100m per vCPU and all of the guest memory (a busy-memory, idle-CPU guest).
pub fn initial_usage(vmi: &Value) -> (String, String) {
    let a = annotations(vmi);
    let cpu = a.get(USAGE_CPU).cloned().unwrap_or_else(|| format!("{}m", vcpus(vmi) * 100));
    let mem = a.get(USAGE_MEMORY).cloned().unwrap_or_else(|| mebibytes(guest_memory(vmi).max(1 << 20)));
    (cpu, mem)
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

/// Is the VMI live-migratable (`LiveMigratable` condition)? False only when asked through the node
/// emulator's annotation.
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
    use serde_json::json;

    use super::*;

    fn vmi() -> Value {
        json!({
            "apiVersion": API_VERSION, "kind": "VirtualMachineInstance",
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "vmi-uid",
                         "labels": {"app": "web"}, "annotations": {USAGE_CPU: "750m"}},
            "spec": {"domain": {"cpu": {"cores": 2, "model": "Broadwell-noTSX"}, "memory": {"guest": "4Gi"},
                                "devices": {}}},
        })
    }

    #[test]
    fn the_initial_usage_is_the_annotation_else_a_share_of_the_vm() {
        assert_eq!(initial_usage(&vmi()), ("750m".to_string(), "4096Mi".to_string()));
        let mut v = vmi();
        v["metadata"]["annotations"] = json!({});
        v["spec"]["domain"]["cpu"]["sockets"] = json!(2);
        assert_eq!(vcpus(&v), 4);
        assert_eq!(initial_usage(&v), ("400m".to_string(), "4096Mi".to_string()));
    }

    #[test]
    fn kubelet_admission_checks_the_node_selector() {
        let p = json!({"spec": {"nodeSelector": {SCHEDULABLE: "true", "disk": "ssd"}}});
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
