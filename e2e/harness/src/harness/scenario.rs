//! One scenario: its namespace, pool, processes and the cluster reset before and after it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::kubevirt::{self as kv, str_at, vm_resource, vmi_resource, vmim_resource};

use super::*;

// Scenario

/// One scenario: its namespace (labelled with its pool), its pool name, the nodes it labels into the pool,
/// and the processes it starts.
pub struct Scenario {
    pub name: String,
    pub ns: String,
    pub pool: String,
    pub nodes: Vec<String>,
    pub client: Client,
    pub children: Vec<Child>,
    started: Instant,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Scenario {
    /// Takes the suite lock, resets the cluster, creates the namespace `e2e-<name>` (label
    /// `kubedrs.io/pool=<name>`, so its VMs are the pool's) and labels `nodes` into the pool.
    pub async fn start(name: &str, nodes: &[&str]) -> anyhow::Result<Scenario> {
        let serial = SERIAL.lock().await;
        eprintln!("== scenario {name}");
        let client = client().await?;
        reset(&client).await?;
        let ns = format!("e2e-{name}");
        let pool = name.to_string();
        let nsobj: Namespace = serde_json::from_value(json!({
            "metadata": {"name": ns, "labels": {TEST_LABEL: name, POOL_LABEL: pool}}
        }))?;
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &nsobj).await?;
        for n in nodes {
            label_node(&client, n, Some(&pool)).await?;
        }
        Ok(Scenario {
            name: name.into(),
            ns,
            pool,
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            client,
            children: Vec::new(),
            started: Instant::now(),
            _serial: serial,
        })
    }

    /// Starts the node emulator (`kubevirt-node --help`) with `args` (`--migration-rate`,
    /// `--phase-step-ms`, ...): the kubelet with the cluster's kubeconfig, virt-handler with its service
    /// account's (`<run dir>/virt-handler.kubeconfig`, written by `e2e/cluster up`).
    pub fn start_emulator(&mut self, args: &[&str]) -> anyhow::Result<usize> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = [
            ("RUST_LOG", "info".to_string()),
            ("KUBEVIRT_HANDLER_KUBECONFIG", run_dir().join("virt-handler.kubeconfig").display().to_string()),
        ];
        let c = Child::spawn(&format!("{}-emulator", self.name), &node_emulator_bin(), &args, &env)?;
        self.children.push(c);
        Ok(self.children.len() - 1)
    }

    /// Starts `kubedrs run` as replica `id`, with its Lease in the scenario's namespace, a 5 s demand
    /// interval and `extra` flags; returns the child's index and its metrics port.
    pub fn start_operator(&mut self, id: &str, extra: &[&str]) -> anyhow::Result<(usize, u16)> {
        self.start_operator_env(id, extra, &[])
    }

    /// [`Scenario::start_operator`] with more environment (e.g. `KUBECONFIG` of a proxy).
    pub fn start_operator_env(
        &mut self,
        id: &str,
        extra: &[&str],
        more_env: &[(&str, String)],
    ) -> anyhow::Result<(usize, u16)> {
        let port = free_port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let defaults = [
            ("--metrics-addr", metrics_addr.as_str()),
            ("--log-format", "text"),
            ("--lease-namespace", self.ns.as_str()),
            ("--lease-name", "kubedrs"),
            ("--demand-interval", "5s"),
            ("--debounce", "2s"),
        ];
        // A flag in `extra` replaces the default (kubedrs refuses a flag given twice).
        let mut args: Vec<String> = vec!["run".into()];
        for (flag, value) in defaults.iter().filter(|(f, _)| !extra.contains(f)) {
            args.extend([flag.to_string(), value.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let bin = kubedrs_bin();
        if !bin.exists() {
            bail!("{} is missing: build it first (cargo build --bin kubedrs)", bin.display());
        }
        let mut env = vec![("POD_NAME", format!("{}-{id}", self.name)), ("RUST_LOG", "info,kube_runtime=warn".into())];
        env.extend(more_env.iter().cloned());
        let c = Child::spawn(&format!("{}-kubedrs-{id}", self.name), &bin, &args, &env)?;
        self.children.push(c);
        Ok((self.children.len() - 1, port))
    }

    /// Creates the scenario's HostPool (name = scenario, selects `kubedrs.io/pool=<name>`, interval 10s)
    /// with `spec` merged over those defaults.
    pub async fn create_pool(&self, spec: Value) -> anyhow::Result<()> {
        let mut s = json!({
            "nodeSelector": {"matchLabels": {POOL_LABEL: self.pool}},
            "automation": "FullyAutomated",
            "interval": "10s",
        });
        if let (Some(dst), Some(src)) = (s.as_object_mut(), spec.as_object()) {
            for (k, v) in src {
                dst.insert(k.clone(), v.clone());
            }
        }
        let obj = json!({"apiVersion": "kubedrs.io/v1alpha1", "kind": "HostPool",
                         "metadata": {"name": self.pool}, "spec": s});
        self.pools().create(&PostParams::default(), &serde_json::from_value(obj)?).await?;
        Ok(())
    }

    pub fn pools(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &hostpool_resource())
    }

    pub async fn pool_status(&self) -> anyhow::Result<Value> {
        let p = self.pools().get(&self.pool).await?;
        Ok(p.data.get("status").cloned().unwrap_or(Value::Null))
    }

    pub fn vms(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &vm_resource())
    }
    pub fn vmis(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &vmi_resource())
    }
    pub fn vmims(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &vmim_resource())
    }
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    pub fn nodes_api(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    pub async fn create_vm(&self, spec: &VmSpec) -> anyhow::Result<()> {
        let obj: DynamicObject = serde_json::from_value(spec.to_json(&self.ns))?;
        self.vms().create(&PostParams::default(), &obj).await.with_context(|| format!("creating VM {}", spec.name))?;
        Ok(())
    }

    /// VMIs as JSON.
    pub async fn list_vmis(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self.vmis().list(&ListParams::default()).await?.items.into_iter().map(to_json).collect())
    }

    /// Migrations as JSON.
    pub async fn list_vmims(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self.vmims().list(&ListParams::default()).await?.items.into_iter().map(to_json).collect())
    }

    /// Where every Running VMI is.
    pub async fn placement(&self) -> anyhow::Result<Placement> {
        Ok(self
            .list_vmis()
            .await?
            .iter()
            .filter(|v| str_at(v, &["status", "phase"]) == Some("Running"))
            .filter_map(|v| {
                Some((str_at(v, &["metadata", "name"])?.to_string(), str_at(v, &["status", "nodeName"])?.to_string()))
            })
            .collect())
    }

    /// `name -> uid` of every VMI (a VMI recreated after a failure gets a new UID: "none lost" compares
    /// these).
    pub async fn vmi_uids(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self
            .list_vmis()
            .await?
            .iter()
            .filter_map(|v| {
                Some((str_at(v, &["metadata", "name"])?.to_string(), str_at(v, &["metadata", "uid"])?.to_string()))
            })
            .collect())
    }

    /// Labels `node` into this scenario's pool.
    pub async fn add_node(&mut self, node: &str) -> anyhow::Result<()> {
        label_node(&self.client, node, Some(&self.pool)).await?;
        self.nodes.push(node.to_string());
        Ok(())
    }

    /// Waits until `n` VMIs run and none is migrating; returns where they are.
    pub async fn all_running(&self, n: usize, timeout: Duration) -> anyhow::Result<Placement> {
        eventually(&format!("{n} VMIs Running"), timeout, || async {
            let vmis = self.list_vmis().await?;
            let running = vmis.iter().filter(|v| str_at(v, &["status", "phase"]) == Some("Running")).count();
            let failed: Vec<String> = vmis
                .iter()
                .filter(|v| str_at(v, &["status", "phase"]) == Some("Failed"))
                .map(|v| {
                    format!("{} ({})", str_at(v, &["metadata", "name"]).unwrap_or_default(), v["status"]["reason"])
                })
                .collect();
            if !failed.is_empty() {
                return Ok(Err(format!("VMIs failed: {failed:?}")));
            }
            if running != n {
                return Ok(Err(format!("{running}/{} Running", vmis.len())));
            }
            Ok(Ok(()))
        })
        .await?;
        self.placement().await
    }

    /// Waits until no migration is unfinished.
    pub async fn migrations_settled(&self, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        eventually("every migration finished", timeout, || async {
            let ms = self.list_vmims().await?;
            let open: Vec<String> = ms
                .iter()
                .filter(|m| !matches!(str_at(m, &["status", "phase"]), Some("Succeeded" | "Failed")))
                .map(|m| str_at(m, &["metadata", "name"]).unwrap_or_default().to_string())
                .collect();
            Ok(if open.is_empty() { Ok(ms) } else { Err(format!("unfinished: {open:?}")) })
        })
        .await
    }

    /// Sets the usage a VM's guest reports (CPU, memory quantities): on its VMI (for pods created later)
    /// and on its active virt-launcher pod; migrations carry it to the target pod.
    pub async fn set_usage(&self, vm: &str, cpu: &str, memory: &str) -> anyhow::Result<()> {
        let ann = json!({"metadata": {"annotations": {kv::USAGE_CPU: cpu, kv::USAGE_MEMORY: memory,
                                                     kv::KWOK_USAGE_CPU: cpu, kv::KWOK_USAGE_MEMORY: memory}}});
        self.vmis().patch(vm, &PatchParams::default(), &Patch::Merge(ann)).await?;
        let vmi = to_json(self.vmis().get(vm).await?);
        let active: Vec<String> =
            vmi["status"]["activePods"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        let pods = self.pods().list(&ListParams::default().labels(&format!("{}={vm}", kv::VM_NAME))).await?;
        let mut n = 0;
        for p in pods.items.iter().filter(|p| p.metadata.uid.as_ref().is_some_and(|u| active.contains(u))) {
            let patch = json!({"metadata": {"annotations": {kv::KWOK_USAGE_CPU: cpu, kv::KWOK_USAGE_MEMORY: memory}}});
            self.pods().patch(&p.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
            n += 1;
        }
        if n == 0 {
            bail!("VM {vm} has no active launcher pod");
        }
        Ok(())
    }

    /// Annotates (`Some`) or un-annotates (`None`) a node.
    pub async fn annotate_node(&self, node: &str, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.nodes_api().patch(node, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }

    pub async fn node(&self, node: &str) -> anyhow::Result<Node> {
        Ok(self.nodes_api().get(node).await?)
    }

    /// Runs `kubedrs plan --json` against the cluster; the plan of this scenario's pool.
    pub fn plan_json(&self) -> anyhow::Result<Value> {
        let out = Command::new(kubedrs_bin())
            .args(["plan", "--json", "--kubeconfig"])
            .arg(kubeconfig_path())
            .output()
            .context("running kubedrs plan")?;
        if !out.status.success() {
            bail!("kubedrs plan failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let all: Value = serde_json::from_slice(&out.stdout)?;
        all.as_array()
            .and_then(|a| a.iter().find(|p| p["pool"] == self.pool.as_str()).cloned())
            .ok_or_else(|| anyhow::anyhow!("no plan for pool {} in {all}", self.pool))
    }

    /// The tail of every child's log (for failure messages).
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut s = String::new();
        for c in &self.children {
            let text = c.log_text();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            s.push_str(&format!("--- {} ({})\n", c.name, c.log.display()));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// Stops the processes and resets the cluster.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        // Stop kubedrs first (so it does not react to the reset), the emulator last (it removes migration
        // finalizers while namespaces go).
        for c in self.children.iter_mut().rev() {
            if !c.name.ends_with("-emulator") {
                c.terminate(Duration::from_secs(10));
            }
        }
        reset(&self.client).await?;
        for c in self.children.iter_mut() {
            c.terminate(Duration::from_secs(10));
        }
        eprintln!("== scenario {} ended after {:.1}s", self.name, self.started.elapsed().as_secs_f64());
        Ok(())
    }
}

pub fn to_json(o: DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

impl Scenario {
    /// Ends the scenario with the body's `result`: stops the processes and resets the cluster either way;
    /// on failure the error carries the tails of the processes' logs.
    pub async fn conclude(self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        match result {
            Ok(()) => self.finish().await,
            Err(e) => {
                let logs = self.logs_tail(40);
                let name = self.name.clone();
                if let Err(r) = self.finish().await {
                    eprintln!("  reset after the failure failed too: {r:#}");
                }
                Err(e.context(format!("scenario {name} failed; logs:\n{logs}")))
            }
        }
    }
}

pub(crate) async fn label_node(client: &Client, node: &str, pool: Option<&str>) -> anyhow::Result<()> {
    let patch = json!({"metadata": {"labels": {POOL_LABEL: pool}}});
    Api::<Node>::all(client.clone()).patch(node, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// Installs the HostPool CRD (server-side apply of `crds/hostpool.yaml`) and waits until it is served.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(repo_root().join("crds/hostpool.yaml"))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if v.is_null() {
            continue;
        }
        let crd: CustomResourceDefinition = serde_json::from_value(v)?;
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("kubedrs-e2e").force(), &Patch::Apply(&crd)).await?;
        eventually(&format!("CRD {name} established"), Duration::from_secs(30), || async {
            let c = crds.get(&name).await?;
            let ok = c
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            Ok(if ok { Ok(()) } else { Err("not established".into()) })
        })
        .await?;
    }
    Ok(())
}

/// Deletes every HostPool and scenario namespace (stripping migration finalizers left behind),
/// and clears kubedrs' labels, annotations and cordons from every node.
pub async fn reset(client: &Client) -> anyhow::Result<()> {
    install_crd(client).await?;
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &hostpool_resource());
    for p in pools.list(&ListParams::default()).await?.items {
        // kubedrs' cleanup finalizer needs a running operator; the reset is cleanup, not under test.
        let patch = json!({"metadata": {"finalizers": null}});
        let _ = pools.patch(&p.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
        let _ = pools.delete(&p.name_any(), &DeleteParams::default()).await;
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    let ours = nss.list(&ListParams::default().labels(TEST_LABEL)).await?.items;
    for ns in &ours {
        let name = ns.name_any();
        // VMs first: when the namespace's deletion removes a VMI under a VM that still wants to run,
        // KubeVirt's VM controller tries to start it again, is refused (namespace terminating) and backs
        // off for minutes before it drops its finalizer.
        let vms: Api<DynamicObject> = Api::namespaced_with(client.clone(), &name, &vm_resource());
        let _ = vms.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
        let _ = nss.delete(&name, &DeleteParams::default()).await;
    }
    eventually("scenario namespaces gone", Duration::from_secs(120), || async {
        let left = nss.list(&ListParams::default().labels(TEST_LABEL)).await?.items;
        for ns in &left {
            // A VMIM keeps its finalizer until virt-controller cleans the migration up.
            let vmims: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name_any(), &vmim_resource());
            for m in vmims.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                if m.metadata.deletion_timestamp.is_some() || ns.metadata.deletion_timestamp.is_some() {
                    let patch = json!({"metadata": {"finalizers": null}});
                    let _ = vmims.patch(&m.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
                }
            }
            // A VM whose VMI is gone keeps KubeVirt's VM controller finalizer until the controller's backoff
            // (see above) lets it look again: cleanup, not under test.
            let vms: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name_any(), &vm_resource());
            let vmis: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name_any(), &vmi_resource());
            let no_vmis = vmis.list(&ListParams::default()).await.is_ok_and(|l| l.items.is_empty());
            for vm in vms.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                if no_vmis && vm.metadata.deletion_timestamp.is_some() {
                    let patch = json!({"metadata": {"finalizers": null}});
                    let _ = vms.patch(&vm.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
                }
            }
        }
        let names: Vec<String> = left.iter().map(|n| n.name_any()).collect();
        Ok(if names.is_empty() { Ok(()) } else { Err(format!("left: {names:?}")) })
    })
    .await?;
    eventually("HostPools gone", Duration::from_secs(30), || async {
        let n = pools.list(&ListParams::default()).await?.items.len();
        Ok(if n == 0 { Ok(()) } else { Err(format!("{n} left")) })
    })
    .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for n in nodes.list(&ListParams::default()).await?.items {
        let labels = n.labels();
        let ann = n.annotations();
        let dirty = labels.contains_key(POOL_LABEL)
            || ann.keys().any(|k| k.starts_with("kubedrs.io/"))
            || n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if !dirty {
            continue;
        }
        let mut annotations = serde_json::Map::new();
        for k in ann.keys().filter(|k| k.starts_with("kubedrs.io/")) {
            annotations.insert(k.clone(), Value::Null);
        }
        let patch = json!({"metadata": {"labels": {POOL_LABEL: null}, "annotations": annotations},
                           "spec": {"unschedulable": null}});
        nodes.patch(&n.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    Ok(())
}

/// The e2e nodes, `kwok-node-0..`, sorted.
pub async fn cluster_nodes(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut v: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels("type=kwok"))
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    v.sort();
    Ok(v)
}

/// Prints a value for the test log.
pub fn show<T: Debug>(what: &str, v: &T) {
    eprintln!("  {what}: {v:?}");
}
