//! The real descheduler and hand-made KWOK pools, and metrics.k8s.io reads (e2e/harness/tests/descheduler.rs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::*;

// The real descheduler and hand-made KWOK pools (e2e/harness/tests/descheduler.rs)

/// The descheduler binary: `E2E_DESCHEDULER_BIN`, else what `e2e/descheduler/build` prints (it builds the
/// pinned Go module on a cache miss, minutes; a cache hit is a stamp check).
pub fn descheduler_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("E2E_DESCHEDULER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new(repo_root().join("e2e/descheduler/build"))
        .stderr(Stdio::inherit())
        .output()
        .context("running e2e/descheduler/build")?;
    if !out.status.success() {
        bail!("e2e/descheduler/build failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(text.lines().last().unwrap_or_default().trim());
    if !path.is_file() {
        bail!("e2e/descheduler/build printed {text:?}, not a binary");
    }
    Ok(path)
}

/// Creates a KWOK node with this capacity (= allocatable), labels and taints, and waits until it is Ready
/// with no taint but `taints` (a new node carries `node.kubernetes.io/not-ready` until the node lifecycle
/// controller sees it Ready). Its status is set on create, as `e2e/cluster nodes` sets it.
pub async fn create_kwok_node(
    client: &Client,
    name: &str,
    capacity: &BTreeMap<&str, String>,
    labels: &BTreeMap<String, String>,
    taints: &[Value],
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut all_labels = labels.clone();
    all_labels.insert("kubernetes.io/hostname".into(), name.into());
    all_labels.insert("kubernetes.io/os".into(), "linux".into());
    all_labels.insert("kubernetes.io/arch".into(), "amd64".into());
    let node: Node = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "kwok.x-k8s.io/node": "fake",
                "metrics.k8s.io/resource-metrics-path": format!("/metrics/nodes/{name}/metrics/resource"),
            },
        },
        "spec": {"taints": taints},
        // A node's status may be set on create, and must be: KWOK's node-initialize stage keeps the capacity
        // it finds and writes its default (1k CPUs) where there is none. A status patched in after the
        // create raced with that stage, which could write the default over it after the check below.
        "status": {
            "capacity": capacity, "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }))?;
    nodes.create(&PostParams::default(), &node).await.with_context(|| format!("creating node {name}"))?;
    let keys: Vec<&str> = taints.iter().filter_map(|t| t["key"].as_str()).collect();
    eventually(&format!("node {name} Ready, capacity set, only its own taints"), Duration::from_secs(60), || async {
        let n = nodes.get(name).await?;
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.clone()).unwrap_or_default();
        // The API server writes quantities in canonical form ("10000m" comes back as "10").
        let value = |k: &str, q: &str| if k == "cpu" { metric_cpu_millis(q) } else { crate::quantity::memory_bytes(q) };
        let cap_ok = capacity
            .iter()
            .all(|(k, v)| alloc.get(*k).is_some_and(|q| value(k, &q.0).is_some() && value(k, &q.0) == value(k, v)));
        let now: Vec<String> = n.spec.and_then(|s| s.taints).unwrap_or_default().into_iter().map(|t| t.key).collect();
        let taints_ok = now.iter().all(|k| keys.contains(&k.as_str()));
        Ok(if ready && cap_ok && taints_ok {
            Ok(())
        } else {
            Err(format!("ready {ready}, allocatable {alloc:?}, taints {now:?}"))
        })
    })
    .await
}

/// A metrics.k8s.io CPU quantity in millicores: metrics-server writes nanocores (`250010764n`), which
/// `quantity::cpu_millis` does not read.
pub(crate) fn metric_cpu_millis(q: &str) -> Option<i64> {
    let q = q.trim();
    let (num, div) = match q.char_indices().last()? {
        (i, 'n') => (&q[..i], 1e6),
        (i, 'u') => (&q[..i], 1e3),
        (i, 'm') => (&q[..i], 1.0),
        _ => (q, 1e-3),
    };
    num.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| (v / div).round() as i64)
}

pub(crate) fn metrics_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", kind), plural)
}

/// Usage (CPU millicores, memory bytes) per pod of a namespace as metrics.k8s.io serves it (summed over
/// containers); pods without PodMetrics yet are absent.
pub async fn pod_metrics(client: &Client, ns: &str) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &metrics_resource("PodMetrics", "pods"));
    let mut out = BTreeMap::new();
    for m in api.list(&ListParams::default()).await?.items {
        let (mut cpu, mut mem) = (0, 0);
        for c in m.data["containers"].as_array().into_iter().flatten() {
            cpu += c["usage"]["cpu"].as_str().and_then(metric_cpu_millis).unwrap_or(0);
            mem += c["usage"]["memory"].as_str().and_then(crate::quantity::memory_bytes).unwrap_or(0);
        }
        out.insert(m.name_any(), (cpu, mem));
    }
    Ok(out)
}

/// When metrics-server last scraped each pod of a namespace (its PodMetrics' `timestamp`): a PodMetrics
/// may outlive its pod for a scrape, so a pod recreated under the same name is measured once this is
/// later than the pod's creation.
pub async fn pod_metrics_scraped(client: &Client, ns: &str) -> anyhow::Result<BTreeMap<String, Time>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &metrics_resource("PodMetrics", "pods"));
    let mut out = BTreeMap::new();
    for m in api.list(&ListParams::default()).await?.items {
        let at: Time = serde_json::from_value(m.data["timestamp"].clone())
            .with_context(|| format!("PodMetrics {ns}/{}: timestamp", m.name_any()))?;
        out.insert(m.name_any(), at);
    }
    Ok(out)
}

/// Usage (CPU millicores, memory bytes) per node as metrics.k8s.io serves it; nodes without NodeMetrics
/// (no pods) are absent.
pub async fn node_metrics(client: &Client) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &metrics_resource("NodeMetrics", "nodes"));
    let mut out = BTreeMap::new();
    for m in api.list(&ListParams::default()).await?.items {
        let cpu = m.data["usage"]["cpu"].as_str().and_then(metric_cpu_millis).unwrap_or(0);
        let mem = m.data["usage"]["memory"].as_str().and_then(crate::quantity::memory_bytes).unwrap_or(0);
        out.insert(m.name_any(), (cpu, mem));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubevirt as kv;

    #[test]
    fn prometheus_samples_are_read_by_name_and_labels() {
        let text = "# HELP x\nkubedrs_migrations_total{pool=\"a\",reason=\"balance\",result=\"succeeded\"} 3\n\
                    kubedrs_migrations_total{pool=\"a\",reason=\"maintenance\",result=\"succeeded\"} 2\n\
                    kubedrs_leader 1\n";
        assert_eq!(metric_value(text, "kubedrs_migrations_total", &[("pool", "a")]), Some(5.0));
        assert_eq!(metric_value(text, "kubedrs_migrations_total", &[("reason", "balance")]), Some(3.0));
        assert_eq!(metric_value(text, "kubedrs_leader", &[]), Some(1.0));
        assert_eq!(metric_value(text, "kubedrs_nothing", &[]), None);
    }

    #[test]
    fn a_vm_spec_is_a_kubevirt_vm() {
        let v =
            vm("web-1").cpus(4).memory("8Gi").label("app", "web").usage("2", "6Gi").placed_by_kubedrs().to_json("ns");
        assert_eq!(v["spec"]["runStrategy"], "Always");
        assert_eq!(v["spec"]["template"]["spec"]["domain"]["cpu"]["cores"], 4);
        assert_eq!(v["spec"]["template"]["spec"]["domain"]["cpu"]["model"], "Broadwell-noTSX");
        assert_eq!(v["spec"]["template"]["spec"]["schedulerName"], "kubedrs");
        assert_eq!(v["spec"]["template"]["metadata"]["labels"]["app"], "web");
        assert_eq!(v["spec"]["template"]["metadata"]["annotations"][kv::USAGE_MEMORY], "6Gi");
        let p = per_node(&[("a".to_string(), "n1".to_string())].into(), &["n1".into(), "n2".into()]);
        assert_eq!(p, [("n1".to_string(), 1), ("n2".to_string(), 0)].into());
    }

    #[test]
    fn metrics_cpu_quantities_are_read_in_any_unit() {
        assert_eq!(metric_cpu_millis("250010764n"), Some(250));
        assert_eq!(metric_cpu_millis("1500000u"), Some(1500));
        assert_eq!(metric_cpu_millis("750m"), Some(750));
        assert_eq!(metric_cpu_millis("2"), Some(2000));
        assert_eq!(metric_cpu_millis("abc"), None);
        assert_eq!(metric_cpu_millis(""), None);
    }
}
