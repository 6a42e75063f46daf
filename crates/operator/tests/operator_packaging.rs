//! Packaging: the example manifests are valid for the CRD and KubeVirt, the dashboard uses the metric
//! names of api.md, and the plain install matches the chart's CRD.
#![allow(clippy::unwrap_used)]

use kube::CustomResourceExt;
use kubedrs_operator::crd::HostPool;
use kubedrs_operator::kubevirt::VirtualMachine;
use serde::Deserialize;
use serde_json::Value;

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| Value::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect()
}

fn examples() -> Vec<(String, Value)> {
    let mut out = vec![];
    let mut files: Vec<_> = std::fs::read_dir(repo("manifests/examples")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        let rel = format!("manifests/examples/{}", f.file_name().unwrap().to_string_lossy());
        for d in documents(&rel) {
            out.push((rel.clone(), d));
        }
    }
    out
}

fn check_against(schema: &Value, doc: &Value, what: &str) {
    let v = jsonschema::validator_for(schema).unwrap();
    let errs: Vec<String> = v.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errs.is_empty(), "{what}: {errs:#?}");
}

#[test]
fn example_hostpools_are_valid() {
    let crd = serde_json::to_value(HostPool::crd()).unwrap();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let mut n = 0;
    for (file, doc) in examples().into_iter().filter(|(_, d)| d["kind"] == "HostPool") {
        check_against(&schema, &doc, &file);
        kube::core::cel::Validator::new().validate(&schema, &doc, None).unwrap_or_else(|e| panic!("{file}: CEL {e:?}"));
        let hp: HostPool = serde_json::from_value(doc).unwrap();
        let name = hp.metadata.name.clone().unwrap();
        hp.spec.validate(&name).unwrap_or_else(|e| panic!("{file}: {e}"));
        n += 1;
    }
    assert!(n >= 3, "{n} example pools");
}

#[test]
fn example_vms_are_valid_kubevirt_objects() {
    let path = repo("data/kubevirt/schemas/virtualmachine_v1.json.gz");
    let schema: Value =
        serde_json::from_reader(flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())).unwrap();
    let mut n = 0;
    for (file, doc) in examples().into_iter().filter(|(_, d)| d["kind"] == "VirtualMachine") {
        check_against(&schema, &doc, &file);
        let vm: VirtualMachine = serde_json::from_value(doc).unwrap();
        assert!(vm.wants_to_run(), "{file}");
        n += 1;
    }
    assert!(n >= 2);
}

/// The metric names of api.md.
const METRICS: [&str; 6] = [
    "kubedrs_pool_imbalance",
    "kubedrs_pool_target_imbalance",
    "kubedrs_node_entitlement_ratio",
    "kubedrs_migrations_total",
    "kubedrs_migrations_in_flight",
    "kubedrs_pass_duration_seconds",
];

#[test]
fn the_dashboard_uses_the_documented_metrics() {
    let text = std::fs::read_to_string(repo("charts/kubedrs/dashboards/kubedrs.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    for m in METRICS {
        assert!(exprs.iter().any(|e| e.contains(m)), "no panel shows {m}");
    }
    // Every kubedrs_ name used is documented (histogram series end in _bucket/_sum/_count).
    for e in &exprs {
        for (i, _) in e.match_indices("kubedrs_") {
            let name: String = e[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(METRICS.contains(&base), "{name} is not a metric of api.md");
        }
    }
}

#[test]
fn the_plain_install_carries_the_current_crd() {
    let docs = documents("manifests/install.yaml");
    let crd = docs.iter().find(|d| d["kind"] == "CustomResourceDefinition").expect("install.yaml has the CRD");
    assert!(
        *crd == serde_json::to_value(&kubedrs_operator::crd::all_crds()[0]).unwrap(),
        "manifests/install.yaml has an old CRD: regenerate it as manifests/README.md says"
    );
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for k in ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment"] {
        assert!(kinds.contains(&k), "install.yaml lacks a {k}");
    }
}

/// (apiGroup, resource) -> verbs, as docs/operator.md lists them: what the code uses (reflectors list and
/// watch; nodes are patched for maintenance, migrations created and deleted, pods bound, the pool status
/// applied, PodMetrics listed, events.k8s.io Events created and patched). Nothing more may be granted:
/// no get (nothing reads single objects), no write to VMs or VMIs, no node metrics, no core Events.
const RBAC: &[(&str, &str, &[&str])] = &[
    ("", "nodes", &["list", "watch", "patch"]),
    ("", "pods", &["list", "watch"]),
    ("", "pods/binding", &["create"]),
    ("", "namespaces", &["list", "watch"]),
    ("kubevirt.io", "virtualmachines", &["list", "watch"]),
    ("kubevirt.io", "virtualmachineinstances", &["list", "watch"]),
    ("kubevirt.io", "virtualmachineinstancemigrations", &["list", "watch", "create", "delete"]),
    ("kubedrs.io", "hostpools", &["list", "watch", "patch"]),
    ("kubedrs.io", "hostpools/status", &["patch"]),
    ("metrics.k8s.io", "pods", &["list"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

#[test]
fn the_cluster_role_grants_exactly_what_is_documented() {
    use std::collections::BTreeSet;
    let docs = documents("manifests/install.yaml");
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let mut granted: BTreeSet<(String, String, String)> = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let strs = |k: &str| -> Vec<String> {
            rule[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        for g in strs("apiGroups") {
            for r in strs("resources") {
                for v in strs("verbs") {
                    assert_ne!(v, "*", "no wildcard verbs");
                    granted.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    let wanted: BTreeSet<(String, String, String)> = RBAC
        .iter()
        .flat_map(|(g, r, vs)| vs.iter().map(move |v| (g.to_string(), r.to_string(), v.to_string())))
        .collect();
    assert_eq!(granted, wanted);
    let lease_role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(lease_role["rules"][0]["resources"], serde_json::json!(["leases"]));
    // One Lease per pool and per replica: listed every tick, created, and renewed, taken over or released by
    // update at the listed resourceVersion.
    assert_eq!(lease_role["rules"][0]["verbs"], serde_json::json!(["list", "create", "update"]));
}

/// `kubectl apply -f manifests/examples/` is safe: no pool acts before its recommendations were read, and every
/// namespace exists before the objects in it (files in name order, documents in file order, as kubectl does).
#[test]
fn the_examples_apply_safely_in_order() {
    let mut namespaces = std::collections::BTreeSet::new();
    let mut pools = 0;
    for (file, doc) in examples() {
        if doc["kind"] == "Namespace" {
            namespaces.insert(doc["metadata"]["name"].as_str().unwrap().to_string());
            continue;
        }
        if let Some(ns) = doc["metadata"]["namespace"].as_str() {
            assert!(namespaces.contains(ns), "{file}: {} in namespace {ns} comes before the Namespace", doc["kind"]);
        }
        if doc["kind"] == "HostPool" {
            assert_ne!(
                doc["spec"]["automation"], "FullyAutomated",
                "{file}: the examples start Manual (docs/quickstart.md)"
            );
            pools += 1;
        }
    }
    assert!(pools >= 3);
    let prod = documents("manifests/examples/hostpool-prod.yaml");
    assert_eq!(prod[0]["spec"]["automation"], "Manual", "the quick start's pool only recommends");
}
