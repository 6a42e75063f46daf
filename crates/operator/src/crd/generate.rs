//! The CRD YAML generated from the types (`kubedrs crd`, `crds/`, the chart).

use super::*;

/// Every CustomResourceDefinition kubedrs installs (today only HostPool).
pub fn all_crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![bound_integers(HostPool::crd())]
}

/// Gives every integer field of the schema the bounds of its Rust type (`format: uint32` ->
/// 0..4294967295), so that the API server refuses a value the operator could not read back: one such
/// object (say `status.nodes: 4294967296`) would otherwise make every list of HostPools fail to decode.
fn bound_integers(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                let bounds: Option<(f64, f64)> = match map.get("format").and_then(|f| f.as_str()) {
                    Some("uint8") => Some((0.0, f64::from(u8::MAX))),
                    Some("uint16") => Some((0.0, f64::from(u16::MAX))),
                    Some("uint32") => Some((0.0, f64::from(u32::MAX))),
                    Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
                    // 2^53: the largest integer a JSON number carries exactly (the API server's own limit).
                    Some("uint64") => Some((0.0, 9_007_199_254_740_991.0)),
                    Some("int64") => Some((-9_007_199_254_740_991.0, 9_007_199_254_740_991.0)),
                    _ => None,
                };
                if let Some((lo, hi)) = bounds.filter(|_| map.get("type").and_then(|t| t.as_str()) == Some("integer")) {
                    let tighter = |key: &str, bound: f64, keep: fn(f64, f64) -> f64, map: &serde_json::Map<_, _>| {
                        map.get(key).and_then(serde_json::Value::as_f64).map_or(bound, |b| keep(b, bound))
                    };
                    let lo = tighter("minimum", lo, f64::max, map);
                    let hi = tighter("maximum", hi, f64::min, map);
                    map.insert("minimum".into(), serde_json::json!(lo));
                    map.insert("maximum".into(), serde_json::json!(hi));
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut json) = serde_json::to_value(&crd) else { return crd };
    walk(&mut json);
    serde_json::from_value(json).unwrap_or(crd)
}

/// The YAML that `kubedrs crd` prints and `crds/hostpool.yaml` holds: one document per CRD.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
