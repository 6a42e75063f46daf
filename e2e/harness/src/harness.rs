//! What the scenarios use: the cluster started by `e2e/cluster up`, child processes that die with the
//! test, polling with a timeout (never a fixed sleep), and builders for pools, VMs and load.
//!
//! Scenarios run one at a time (a process-wide lock) against one cluster. [`Scenario::start`] first resets
//! what an earlier scenario may have left (HostPools, its namespaces, node labels, annotations and
//! cordons), so a failed scenario never spoils the next one; [`Scenario::finish`] resets again.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::{Value, json};

use crate::emulator::{vm_resource, vmi_resource, vmim_resource};
use crate::kubevirt::{self as kv, str_at};

/// Label on every namespace a scenario creates (reset deletes them).
pub const TEST_LABEL: &str = "e2e.kubedrs.io/scenario";
pub const POOL_LABEL: &str = "kubedrs.io/pool";
pub const MAINTENANCE: &str = "kubedrs.io/maintenance";
pub const MAINTENANCE_STATE: &str = "kubedrs.io/maintenance-state";
pub const MAINTENANCE_MESSAGE: &str = "kubedrs.io/maintenance-message";
pub const MAINTENANCE_CORDONED: &str = "kubedrs.io/maintenance-cordoned";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The repository's root (this crate is `e2e/harness`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

/// `E2E_RUN_DIR`, else `e2e/.run`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("E2E_RUN_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("e2e/.run"))
}

/// The cluster's kubeconfig: `E2E_KUBECONFIG`, else `<run dir>/kubeconfig`.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("E2E_KUBECONFIG").map(PathBuf::from).unwrap_or_else(|| run_dir().join("kubeconfig"))
}

/// A client for the e2e cluster.
pub async fn client() -> anyhow::Result<Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = kubeconfig_path();
    let kc = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading {} (is the cluster up? `e2e/cluster up`)", path.display()))?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// The directory of a test binary's sibling binaries (`target/<profile>`).
fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test>-<hash>
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

/// The operator binary: `KUBEDRS_BIN`, else `kubedrs` next to this test's target directory (built by
/// `e2e/test` with `cargo build --bin kubedrs` before the suite).
pub fn kubedrs_bin() -> PathBuf {
    std::env::var_os("KUBEDRS_BIN").map(PathBuf::from).unwrap_or_else(|| target_profile_dir().join("kubedrs"))
}

/// The emulator binary: `KUBEVIRT_EMULATOR_BIN`, else `kubevirt-emulator` in the target directory (cargo
/// builds it before this crate's integration tests).
pub fn emulator_bin() -> PathBuf {
    std::env::var_os("KUBEVIRT_EMULATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_profile_dir().join("kubevirt-emulator"))
}

/// Which KubeVirt the cluster runs (`E2E_KUBEVIRT`, as `e2e/cluster up` had it): `real` (virt-controller
/// and virt-api built from KubeVirt's module; scenarios start the node emulator `kubevirt-node`) or
/// `emulated` (scenarios start the whole-KubeVirt emulator `kubevirt-emulator`).
pub fn real_kubevirt() -> bool {
    std::env::var("E2E_KUBEVIRT").map_or(true, |v| v != "emulated")
}

/// The node emulator binary: `KUBEVIRT_NODE_BIN`, else `kubevirt-node` in the target directory.
pub fn node_emulator_bin() -> PathBuf {
    std::env::var_os("KUBEVIRT_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_profile_dir().join("kubevirt-node"))
}

/// Logs of the processes a scenario starts: `<run dir>/logs/e2e/`.
pub fn log_dir() -> PathBuf {
    run_dir().join("logs/e2e")
}

// ---------------------------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------------------------

/// The answer of one poll: the value, or why not yet (reported on timeout).
pub type Check<T> = Result<T, String>;

/// Polls `f` every 500 ms until it returns `Ok`, or fails after `timeout` with the last reason. API errors
/// count as "not yet".
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Check<T>>>,
{
    let start = Instant::now();
    loop {
        let last = match f().await {
            Ok(Ok(v)) => {
                eprintln!("  ok after {:>5.1}s: {what}", start.elapsed().as_secs_f64());
                return Ok(v);
            }
            Ok(Err(why)) => why,
            Err(e) => format!("error: {e:#}"),
        };
        if start.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for: {what}\n  last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Checks that `f` holds at every poll for `period` (an invariant under observation, e.g. "no second
/// migration appears"). Fails at the first poll where it does not.
pub async fn always_for<F, Fut>(what: &str, period: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Check<()>>>,
{
    let start = Instant::now();
    while start.elapsed() < period {
        if let Err(why) = f().await? {
            bail!("{what} stopped holding after {:.1}s: {why}", start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("  held for {:>5.1}s: {what}", period.as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------------------

/// A child process (operator or emulator) whose output goes to a log file; killed when dropped.
pub struct Child {
    pub name: String,
    pub log: PathBuf,
    child: std::process::Child,
}

impl Child {
    pub fn spawn(name: &str, program: &Path, args: &[String], env: &[(&str, String)]) -> anyhow::Result<Child> {
        std::fs::create_dir_all(log_dir())?;
        let log = log_dir().join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err).env("KUBECONFIG", kubeconfig_path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
        eprintln!("  started {name} (pid {}), log {}", child.id(), log.display());
        Ok(Child { name: name.to_string(), log, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `grace` for the exit (SIGKILL after).
    pub fn terminate(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.is_running() {
            self.terminate(Duration::from_secs(5));
        }
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// GET `http://127.0.0.1:<port><path>` (plain HTTP/1.0), the body.
pub fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// The value of one Prometheus sample (`name{labels}` exactly as printed, or a prefix match on the name
/// when `labels` is empty), summed over matching lines.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n != name || !labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))) {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------------
// Scenario
// ---------------------------------------------------------------------------------------------------------

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

    /// Starts the KubeVirt emulator with `args` (`--migration-rate`, `--phase-step-ms`, ...): with the real
    /// KubeVirt the node emulator (`kubevirt-node --help`): the kubelet with the cluster's kubeconfig,
    /// virt-handler with its service account's (`<run dir>/virt-handler.kubeconfig`, written by
    /// `e2e/cluster up`); else the
    /// whole-KubeVirt emulator (`kubevirt-emulator --help`).
    pub fn start_emulator(&mut self, args: &[&str]) -> anyhow::Result<usize> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut env = vec![("RUST_LOG", "info".to_string())];
        let bin = if real_kubevirt() {
            env.push(("KUBEVIRT_HANDLER_KUBECONFIG", run_dir().join("virt-handler.kubeconfig").display().to_string()));
            node_emulator_bin()
        } else {
            emulator_bin()
        };
        let c = Child::spawn(&format!("{}-emulator", self.name), &bin, &args, &env)?;
        self.children.push(c);
        Ok(self.children.len() - 1)
    }

    /// Starts `kubedrs run` as replica `id`, with its Lease in the scenario's namespace, a 5 s demand
    /// interval and `extra` flags; returns the child's index and its metrics port.
    pub fn start_operator(&mut self, id: &str, extra: &[&str]) -> anyhow::Result<(usize, u16)> {
        let port = free_port();
        let mut args: Vec<String> = [
            "run",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "text",
            "--lease-namespace",
            &self.ns,
            "--lease-name",
            "kubedrs",
            "--demand-interval",
            "5s",
            "--debounce",
            "2s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let bin = kubedrs_bin();
        if !bin.exists() {
            bail!("{} is missing: build it first (cargo build --bin kubedrs)", bin.display());
        }
        let env = [("POD_NAME", format!("{}-{id}", self.name)), ("RUST_LOG", "info,kube_runtime=warn".into())];
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

async fn label_node(client: &Client, node: &str, pool: Option<&str>) -> anyhow::Result<()> {
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

/// Deletes every HostPool and scenario namespace (stripping migration finalizers a dead emulator left),
/// and clears kubedrs' labels, annotations and cordons from every node.
pub async fn reset(client: &Client) -> anyhow::Result<()> {
    install_crd(client).await?;
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &hostpool_resource());
    for p in pools.list(&ListParams::default()).await?.items {
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
            // A VMIM keeps its finalizer until a (living) emulator removes it.
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

// ---------------------------------------------------------------------------------------------------------
// The real descheduler and hand-made KWOK pools (e2e/harness/tests/descheduler.rs)
// ---------------------------------------------------------------------------------------------------------

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
/// controller sees it Ready). Status goes through the status subresource, as `e2e/cluster nodes` does it.
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
    }))?;
    nodes.create(&PostParams::default(), &node).await.with_context(|| format!("creating node {name}"))?;
    let status = json!({"status": {
        "capacity": capacity, "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
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
        if !cap_ok {
            // KWOK's node-initialize stage may write its default capacity over ours: write it again.
            nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
        }
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
fn metric_cpu_millis(q: &str) -> Option<i64> {
    let q = q.trim();
    let (num, div) = match q.char_indices().last()? {
        (i, 'n') => (&q[..i], 1e6),
        (i, 'u') => (&q[..i], 1e3),
        (i, 'm') => (&q[..i], 1.0),
        _ => (q, 1e-3),
    };
    num.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| (v / div).round() as i64)
}

fn metrics_resource(kind: &str, plural: &str) -> ApiResource {
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
