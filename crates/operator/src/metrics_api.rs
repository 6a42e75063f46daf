//! `metrics.k8s.io/v1beta1` PodMetrics (metrics-server), which k8s-openapi does not ship: the usage that
//! kubedrs turns into VM demand.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use super::kubevirt::Quantity;
use kubedrs_engine::Resources;
use kubedrs_spec::quantity::{QuantityError, cpu_millis, memory_bytes};

/// Usage of one pod's containers over a short window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PodMetrics {
    pub metadata: ObjectMeta,
    /// End of the window the usage was measured over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Time>,
    /// Length of the window (a Go duration, e.g. `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ContainerMetrics {
    pub name: String,
    /// `cpu` and `memory` (working set).
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

impl PodMetrics {
    /// CPU and memory of all containers, summed.
    pub fn usage(&self) -> Result<Resources, QuantityError> {
        let mut total = Resources::ZERO;
        for c in &self.containers {
            let cpu = c.usage.get("cpu").map(|q| cpu_millis(q.as_str())).transpose()?.unwrap_or(0);
            let mem = c.usage.get("memory").map(|q| memory_bytes(q.as_str())).transpose()?.unwrap_or(0);
            total = total.saturating_add(Resources::new(cpu, mem));
        }
        Ok(total)
    }
}

impl kube::Resource for PodMetrics {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "PodMetrics".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "metrics.k8s.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1beta1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usage_sums_containers() {
        let pm: PodMetrics = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "virt-launcher-a-xyz", "namespace": "ns"},
            "timestamp": "2025-01-02T03:04:05Z", "window": "30s",
            "containers": [
                {"name": "compute", "usage": {"cpu": "1500m", "memory": "3Gi"}},
                {"name": "guest-console-log", "usage": {"cpu": "1m", "memory": "10Mi"}}
            ]
        }))
        .unwrap();
        assert_eq!(pm.usage().unwrap(), Resources::new(1501, (3 << 30) + (10 << 20)));
        assert_eq!(
            <PodMetrics as kube::Resource>::url_path(&(), Some("ns")),
            "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods"
        );
    }
}
