//! The HostPool CRD: the committed YAML matches the code, and the schema says what api.md promises.
#![allow(clippy::unwrap_used)]

use kube::CustomResourceExt;
use kubedrs_operator::crd::{HostPool, crds_yaml};
use serde_json::Value;

const REGENERATE: &str = "run `cargo run -- crd > crds/hostpool.yaml && cp crds/hostpool.yaml charts/kubedrs/crds/`";

fn repo_file(path: &str) -> String {
    let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}; {REGENERATE}"))
}

#[test]
fn committed_crds_match_the_code() {
    let generated = crds_yaml().unwrap();
    for path in ["crds/hostpool.yaml", "charts/kubedrs/crds/hostpool.yaml"] {
        let committed = repo_file(path);
        assert!(committed == generated, "{path} is out of date with crates/operator/src/crd/: {REGENERATE}");
    }
}

/// The openAPIV3Schema of the HostPool CRD, as JSON.
fn schema() -> Value {
    let crd = serde_json::to_value(HostPool::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn spec_prop(name: &str) -> Value {
    schema()["properties"]["spec"]["properties"][name].clone()
}

#[test]
fn names_scope_and_subresources_follow_api_md() {
    let crd = serde_json::to_value(HostPool::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "hostpools.kubedrs.io");
    assert_eq!(crd["spec"]["group"], "kubedrs.io");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["kind"], "HostPool");
    assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!(["hp"]));
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert!(v["subresources"]["status"].is_object(), "status subresource");
}

#[test]
fn printer_columns_are_the_documented_ones() {
    let crd = serde_json::to_value(HostPool::crd()).unwrap();
    let cols = crd["spec"]["versions"][0]["additionalPrinterColumns"].as_array().unwrap().clone();
    let default_cols: Vec<(String, String)> = cols
        .iter()
        .filter(|c| c.get("priority").is_none())
        .map(|c| (c["name"].as_str().unwrap().to_uppercase(), c["jsonPath"].as_str().unwrap().to_string()))
        .collect();
    let want = [
        ("READY", ".status.conditions[?(@.type==\"Ready\")].status"),
        ("NODES", ".status.nodes"),
        ("VMS", ".status.vms"),
        ("IMBALANCE", ".status.imbalance"),
        ("TARGET", ".status.targetImbalance"),
        ("IN-FLIGHT", ".status.migrations.inFlight"),
        ("AUTOMATION", ".spec.automation"),
        ("AGE", ".metadata.creationTimestamp"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(default_cols, want);
    // Every column points at a field the schema has (a typo would show an empty column forever).
    for c in &cols {
        let path = c["jsonPath"].as_str().unwrap();
        if path.starts_with(".metadata") {
            continue;
        }
        let mut node = schema();
        // A filter (`conditions[?(@.type=="Ready")]`) holds a dot of its own: split around it.
        let (head, filter, tail) = match (path.find("[?(@."), path.find(")]")) {
            (Some(a), Some(b)) => (&path[..a], Some(&path[a + 5..b]), &path[b + 2..]),
            _ => (path, None, ""),
        };
        for part in head.trim_start_matches('.').split('.') {
            node = node["properties"][part].clone();
            assert!(node.is_object(), "printer column {path}: no schema for {part}");
        }
        if let Some(filter) = filter {
            let field = filter.split("==").next().unwrap();
            node = node["items"].clone();
            assert!(node["properties"][field].is_object(), "printer column {path}: the items have no {field}");
        }
        for part in tail.trim_start_matches('.').split('.').filter(|p| !p.is_empty()) {
            node = node["properties"][part].clone();
            assert!(node.is_object(), "printer column {path}: no schema for {part}");
        }
    }
}

#[test]
fn enums_defaults_and_bounds() {
    let a = spec_prop("automation");
    assert_eq!(a["enum"], serde_json::json!(["Manual", "PartiallyAutomated", "FullyAutomated"]));
    assert_eq!(a["default"], "FullyAutomated");

    let t = spec_prop("migrationThreshold");
    assert_eq!((t["minimum"].as_f64(), t["maximum"].as_f64(), t["default"].as_u64()), (Some(1.0), Some(5.0), Some(3)));

    let i = spec_prop("interval");
    assert_eq!(i["default"], "5m");
    assert!(i["pattern"].is_string());
    let rules: Vec<&str> =
        i["x-kubernetes-validations"].as_array().unwrap().iter().map(|r| r["rule"].as_str().unwrap()).collect();
    assert!(rules.contains(&"duration(self) >= duration('10s')"), "{rules:?}");

    let c = spec_prop("concurrency");
    assert_eq!(c["properties"]["perPool"]["default"], 5);
    assert_eq!(c["properties"]["perNodeOutbound"]["default"], 2);
    assert_eq!(c["properties"]["perNodeInbound"]["default"], 2);

    assert_eq!(spec_prop("cpuBaseline")["default"], "Auto");
    assert_eq!(spec_prop("maintenance")["properties"]["honorCordon"]["default"], false);
    assert_eq!(spec_prop("maxMigrationsPerPass")["default"], 16);
    let m = spec_prop("maxMovesPerVmPerDay");
    assert_eq!((m["default"].as_u64(), m["maximum"].as_f64()), (Some(6), Some(12.0)));
    assert_eq!(spec_prop("paused")["default"], false);
    assert_eq!(schema()["properties"]["spec"]["required"], serde_json::json!(["nodeSelector"]));
}

#[test]
fn rules_are_a_map_keyed_by_name_with_a_node_selector_rule() {
    let r = spec_prop("rules");
    assert_eq!(r["x-kubernetes-list-type"], "map", "the API server then refuses duplicate names");
    assert_eq!(r["x-kubernetes-list-map-keys"], serde_json::json!(["name"]));
    let item = &r["items"];
    assert_eq!(
        item["properties"]["type"]["enum"],
        serde_json::json!(["VMAffinity", "VMAntiAffinity", "VMNodeAffinity"])
    );
    assert_eq!(item["properties"]["enforcement"]["enum"], serde_json::json!(["Required", "Preferred"]));
    assert_eq!(item["properties"]["enforcement"]["default"], "Required");
    let cel = item["x-kubernetes-validations"][0]["rule"].as_str().unwrap();
    assert!(cel.contains("has(self.nodeSelector)"), "{cel}");
    let req: Vec<&str> = item["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(req, ["name", "type", "vmSelector"]);
}

#[test]
fn the_schema_is_structural() {
    // Kubernetes refuses a CRD whose schema has a property without a type (outside of
    // x-kubernetes-int-or-string / x-kubernetes-preserve-unknown-fields), or uses $ref/anyOf with types.
    fn walk(v: &Value, path: &str) {
        let obj = v.as_object().unwrap();
        assert!(!obj.contains_key("$ref"), "{path}: $ref");
        let free =
            obj.contains_key("x-kubernetes-int-or-string") || obj.contains_key("x-kubernetes-preserve-unknown-fields");
        assert!(free || obj.contains_key("type"), "{path}: no type");
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                walk(p, &format!("{path}.{k}"));
            }
        }
        if let Some(items) = obj.get("items") {
            walk(items, &format!("{path}[]"));
        }
        if let Some(ap) = obj.get("additionalProperties").filter(|a| a.is_object()) {
            walk(ap, &format!("{path}{{}}"));
        }
    }
    walk(&schema(), "");
}

// ---------------------------------------------------------------------------------------------------------
// CEL rules, evaluated offline with kube's client-side CEL (the same rules the API server runs).
// ---------------------------------------------------------------------------------------------------------

fn cel_errors(spec_yaml: &str) -> Vec<String> {
    let spec: Value = serde_yaml::from_str(spec_yaml).unwrap();
    let object = serde_json::json!({
        "apiVersion": "kubedrs.io/v1alpha1", "kind": "HostPool", "metadata": {"name": "p"}, "spec": spec
    });
    match kube::core::cel::Validator::new().validate(&schema(), &object, None) {
        Ok(()) => vec![],
        Err(errs) => errs.into_iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn cel_accepts_the_api_md_example() {
    let errs = cel_errors(
        r#"
nodeSelector: {matchLabels: {kubedrs.io/pool: prod}}
interval: 5m
cpuBaseline: Haswell-noTSX
rules:
- {name: web-spread, type: VMAntiAffinity, vmSelector: {matchLabels: {app: web}}}
- {name: db-on-ssd, type: VMNodeAffinity, vmSelector: {matchLabels: {tier: db}}, nodeSelector: {matchLabels: {disk: ssd}}}
"#,
    );
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn cel_refuses_what_the_schema_cannot_say() {
    let cases = [
        ("interval: 5s", "at least 10s"),
        ("interval: 25h", "at most 24h"),
        ("cpuBaseline: host-passthrough", "host-model and host-passthrough"),
        ("rules: [{name: a, type: VMNodeAffinity, vmSelector: {}}]", "nodeSelector is required"),
        ("rules: [{name: a, type: VMAffinity, vmSelector: {}, nodeSelector: {}}]", "nodeSelector is required"),
    ];
    for (extra, want) in cases {
        let errs = cel_errors(&format!("nodeSelector: {{}}\n{extra}"));
        assert!(errs.iter().any(|e| e.contains(want)), "{extra}: want {want:?}, got {errs:?}");
    }
}

/// Every integer of the installed schema is bounded by what the operator's types hold, so the API server
/// refuses an object the operator could not decode (one such HostPool once made every list fail).
#[test]
fn the_installed_schema_bounds_every_integer_to_its_rust_type() {
    let crd = serde_json::to_value(&kubedrs_operator::crd::all_crds()[0]).unwrap();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    fn check(path: &str, v: &Value, unbounded: &mut Vec<String>) {
        if let Some(map) = v.as_object() {
            if map.get("type") == Some(&Value::from("integer"))
                && (map.get("minimum").is_none() || map.get("maximum").is_none())
            {
                unbounded.push(path.to_string());
            }
            for (k, child) in map {
                check(&format!("{path}.{k}"), child, unbounded);
            }
        }
    }
    let mut unbounded = Vec::new();
    check("", &schema, &mut unbounded);
    assert!(unbounded.is_empty(), "integers without both bounds: {unbounded:?}");

    let validator = jsonschema::validator_for(&schema).unwrap();
    let pool = |nodes: u64| {
        serde_json::json!({
            "apiVersion": "kubedrs.io/v1alpha1", "kind": "HostPool", "metadata": {"name": "p"},
            "spec": {"nodeSelector": {}}, "status": {"nodes": nodes}
        })
    };
    assert!(validator.is_valid(&pool(u64::from(u32::MAX))));
    assert!(!validator.is_valid(&pool(u64::from(u32::MAX) + 1)), "status.nodes above u32 must be refused");
}
