//! Builders of the objects scenarios create (VMs, HostPools) and reading placements back.

use std::collections::BTreeMap;
use std::fmt::Debug;

use kube::api::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::kubevirt::{self as kv};

// Objects

pub fn hostpool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubedrs.io", "v1alpha1", "HostPool"), "hostpools")
}

/// A VM for a scenario (`runStrategy: Always`).
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub name: String,
    pub cpus: i64,
    pub memory: String,
    pub model: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub template_annotations: BTreeMap<String, String>,
    pub kubedrs_schedules: bool,
}

/// `vm("web-1").cpus(2).memory("4Gi")`: by default 2 vCPUs, 4 GiB, CPU model `Broadwell-noTSX` (which
/// every e2e node generation supports), placed by kube-scheduler.
pub fn vm(name: &str) -> VmSpec {
    VmSpec {
        name: name.into(),
        cpus: 2,
        memory: "4Gi".into(),
        model: Some("Broadwell-noTSX".into()),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        template_annotations: BTreeMap::new(),
        kubedrs_schedules: false,
    }
}

impl VmSpec {
    pub fn cpus(mut self, n: i64) -> Self {
        self.cpus = n;
        self
    }
    pub fn memory(mut self, m: &str) -> Self {
        self.memory = m.into();
        self
    }
    /// `None`: no model (KubeVirt's default, `host-model`).
    pub fn model(mut self, m: Option<&str>) -> Self {
        self.model = m.map(str::to_string);
        self
    }
    /// A label on the VM and its template (so the VMI and pod carry it).
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    /// An annotation on the VM (kubedrs reads shares and automation there).
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }
    /// The usage its launcher pods report (KWOK metrics).
    pub fn usage(mut self, cpu: &str, memory: &str) -> Self {
        self.template_annotations.insert(kv::USAGE_CPU.into(), cpu.into());
        self.template_annotations.insert(kv::USAGE_MEMORY.into(), memory.into());
        self
    }
    /// `schedulerName: kubedrs`.
    pub fn placed_by_kubedrs(mut self) -> Self {
        self.kubedrs_schedules = true;
        self
    }

    pub fn to_json(&self, ns: &str) -> Value {
        let mut cpu = json!({"cores": self.cpus, "sockets": 1, "threads": 1});
        if let Some(m) = &self.model {
            cpu["model"] = json!(m);
        }
        let mut spec = json!({
            "domain": {
                "cpu": cpu,
                "memory": {"guest": self.memory},
                "resources": {"requests": {"memory": self.memory}},
                "devices": {"disks": [{"name": "rootdisk", "disk": {"bus": "virtio"}}]},
            },
            "volumes": [{"name": "rootdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}],
            "evictionStrategy": "LiveMigrate",
            "terminationGracePeriodSeconds": 0,
        });
        if self.kubedrs_schedules {
            spec["schedulerName"] = json!("kubedrs");
        }
        // KWOK reports what the launcher pod's annotations say; virt-controller copies the VMI's annotations
        // onto its pods (also onto a migration's target pod).
        let mut template_annotations = self.template_annotations.clone();
        let (cpu, mem) = kv::initial_usage(&json!({"metadata": {"annotations": &self.template_annotations},
                                                    "spec": &spec}));
        template_annotations.insert(kv::KWOK_USAGE_CPU.into(), cpu);
        template_annotations.insert(kv::KWOK_USAGE_MEMORY.into(), mem);
        json!({
            "apiVersion": kv::API_VERSION,
            "kind": "VirtualMachine",
            "metadata": {"name": self.name, "namespace": ns, "labels": self.labels, "annotations": self.annotations},
            "spec": {
                "runStrategy": "Always",
                "template": {
                    "metadata": {"labels": self.labels, "annotations": template_annotations},
                    "spec": spec,
                },
            },
        })
    }
}

/// Where each running VMI of a namespace is (`name -> node`), from `status.nodeName`.
pub type Placement = BTreeMap<String, String>;

/// VMIs per node of `placement` (nodes without VMIs included when listed in `nodes`).
pub fn per_node(placement: &Placement, nodes: &[String]) -> BTreeMap<String, usize> {
    let mut m: BTreeMap<String, usize> = nodes.iter().map(|n| (n.clone(), 0)).collect();
    for n in placement.values() {
        *m.entry(n.clone()).or_default() += 1;
    }
    m
}
