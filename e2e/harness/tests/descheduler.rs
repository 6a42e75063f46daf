//! The real descheduler (`sigs.k8s.io/descheduler`, built from its Go module by `e2e/descheduler/build`)
//! against the local control plane, on the shared cases of `e2e/descheduler/cases.yaml`, whose recorded
//! answers kubedrs' re-implementation (`crates/sim/src/policies/parity.rs`) is checked against too.
//!
//! Every case gets its own KWOK nodes (labelled with the case, tainted so nothing else lands there) and
//! namespace; its pods carry the usage annotations that KWOK turns into kubelet metrics and metrics-server
//! into metrics.k8s.io. Once metrics.k8s.io shows every pod's and node's usage, the descheduler runs once per
//! case (`LowNodeUtilization` on metrics-server usage, the policy's `nodeSelector` on the case's nodes), and
//! the evicted pods are the ones it deleted. No eviction webhook applies to these pods (they are not labelled
//! `kubevirt.io=virt-launcher`), so an eviction is the pod's deletion. Run by `e2e/test` after the suite;
//! alone:
//!
//! ```sh
//! e2e/cluster up && cargo test -p kubedrs-e2e --test descheduler -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kubedrs_e2e::harness::*;
use serde::Deserialize;
use serde_json::{Value, json};

/// Label on the case's nodes (the policy's `nodeSelector`) and namespaces.
const CASE_LABEL: &str = "e2e.kubedrs.io/descheduler-case";
/// Taint on the case's nodes: keeps DaemonSets and scheduled pods off them (the case's pods tolerate it).
const TAINT: &str = "e2e.kubedrs.io/descheduler-parity";
const GIB_MI: f64 = 1024.0;

#[derive(Debug, Deserialize)]
struct CaseFile {
    cases: Vec<Case>,
}

/// What this side needs of a case (the re-implementation's side checks the file's shape).
#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    /// LowNodeUtilization's args, plus the top-level `maxNoOfPodsToEvictTotal`.
    policy: serde_json::Map<String, Value>,
    nodes: Vec<CaseNode>,
    pods: Vec<CasePod>,
    evicted: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct CaseNode {
    name: String,
    cpu: f64,
    memory: f64,
}

#[derive(Debug, Deserialize)]
struct CasePod {
    name: String,
    node: String,
    cpu: f64,
    memory: f64,
    #[serde(default)]
    requests: Option<Requests>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct Requests {
    cpu: f64,
    memory: f64,
}

/// The re-implementation's default (`parity::DEFAULT_REQUESTS`).
const DEFAULT_REQUESTS: Requests = Requests { cpu: 0.1, memory: 1.0 };

fn millis(cores: f64) -> i64 {
    (cores * 1000.0).round() as i64
}

fn mib(gib: f64) -> i64 {
    (gib * GIB_MI).round() as i64
}

impl Case {
    fn ns(&self) -> String {
        format!("dsch-{}", self.name)
    }

    fn node_name(&self, node: &str) -> String {
        format!("dsch-{}-{node}", self.name)
    }

    /// A pod's class: (node, usage, requests). The descheduler's choice among pods of one class is arbitrary.
    fn class(&self, pod: &str) -> Option<(String, i64, i64, i64, i64)> {
        self.pods.iter().find(|p| p.name == pod).map(|p| {
            let r = p.requests.unwrap_or(DEFAULT_REQUESTS);
            (p.node.clone(), millis(p.cpu), mib(p.memory), millis(r.cpu), mib(r.memory))
        })
    }

    fn classes(&self, pods: &BTreeSet<String>) -> Vec<(String, i64, i64, i64, i64)> {
        let mut v: Vec<_> = pods.iter().filter_map(|p| self.class(p)).collect();
        v.sort();
        v
    }

    /// The descheduler's v1alpha2 policy for this case: the file's args as they are, actual usage from
    /// metrics-server (`metricsProviders` + `metricsUtilization.source`, the form that replaces the
    /// deprecated `metricsCollector`/`metricsServer` in this version), only the case's nodes.
    fn policy(&self) -> Value {
        let mut args = self.policy.clone();
        let total = args.remove("maxNoOfPodsToEvictTotal");
        args.insert("metricsUtilization".into(), json!({"source": "KubernetesMetrics"}));
        let mut doc = json!({
            "apiVersion": "descheduler/v1alpha2",
            "kind": "DeschedulerPolicy",
            "nodeSelector": format!("{CASE_LABEL}={}", self.name),
            "metricsProviders": [{"source": "KubernetesMetrics"}],
            "profiles": [{
                "name": "kubedrs-parity",
                "pluginConfig": [{"name": "LowNodeUtilization", "args": args}],
                "plugins": {"balance": {"enabled": ["LowNodeUtilization"]}},
            }],
        });
        if let Some(t) = total {
            doc["maxNoOfPodsToEvictTotal"] = t;
        }
        doc
    }
}

fn load_cases() -> anyhow::Result<Vec<Case>> {
    let path = repo_root().join("e2e/descheduler/cases.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: CaseFile = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(file.cases)
}

#[tokio::test]
async fn the_real_descheduler_evicts_what_the_shared_cases_record() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let cases = load_cases()?;
    ensure!(!cases.is_empty(), "no cases in e2e/descheduler/cases.yaml");
    let bin = descheduler_bin()?;
    eprintln!("== descheduler parity: {} cases, {}", cases.len(), bin.display());
    let client = client().await?;
    cleanup(&client).await?;
    let result = run_cases(&client, &bin, &cases).await;
    // Whatever happened, leave the cluster as it was.
    let cleaned = cleanup(&client).await;
    eprintln!("== descheduler parity ended after {:.1}s", t0.elapsed().as_secs_f64());
    result?;
    cleaned
}

async fn run_cases(client: &Client, bin: &std::path::Path, cases: &[Case]) -> anyhow::Result<()> {
    for c in cases {
        set_up(client, c).await.with_context(|| format!("setting up case {}", c.name))?;
    }
    wait_for_usage(client, cases).await?;
    let dir = run_dir().join("descheduler");
    std::fs::create_dir_all(&dir)?;
    let mut wrong = Vec::new();
    for c in cases {
        let evicted = run_decided(client, bin, c, &dir).await.with_context(|| format!("case {}", c.name))?;
        let want: BTreeSet<String> = c.evicted.iter().cloned().collect();
        let same = c.classes(&evicted) == c.classes(&want);
        let verdict = match (same, evicted == want) {
            (true, true) => "agrees",
            (true, false) => "agrees up to identical pods (same node, usage, requests)",
            (false, _) => "DIFFERS",
        };
        eprintln!("  {:<28} descheduler evicted {evicted:?}; the file records {want:?}: {verdict}", c.name);
        if !same {
            wrong.push(format!("{}: evicted {evicted:?}, the file records {want:?}", c.name));
        }
    }
    ensure!(wrong.is_empty(), "the real descheduler disagrees with the shared cases:\n{}", wrong.join("\n"));
    Ok(())
}

/// Namespace (with the pods' owner and default service account), nodes and pods of one case.
async fn set_up(client: &Client, c: &Case) -> anyhow::Result<()> {
    let ns = c.ns();
    let nsobj: Namespace = serde_json::from_value(json!({
        "metadata": {"name": ns, "labels": {CASE_LABEL: c.name, TEST_LABEL: "descheduler"}}
    }))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &nsobj).await?;
    let taint = json!({"key": TAINT, "value": "true", "effect": "NoSchedule"});
    for n in &c.nodes {
        let capacity: BTreeMap<&str, String> = [
            ("cpu", format!("{}m", millis(n.cpu))),
            ("memory", format!("{}Mi", mib(n.memory))),
            ("pods", "110".to_string()),
        ]
        .into();
        let labels: BTreeMap<String, String> = [(CASE_LABEL.to_string(), c.name.clone())].into();
        create_kwok_node(client, &c.node_name(&n.name), &capacity, &labels, std::slice::from_ref(&taint)).await?;
    }
    // The descheduler never evicts a pod without an owner (it would not come back); a ConfigMap owns them
    // (owners that exist keep the garbage collector away).
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "vms", "namespace": ns}}))?;
    Api::<ConfigMap>::namespaced(client.clone(), &ns).create(&PostParams::default(), &owner).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    eventually(&format!("service account default in {ns}"), Duration::from_secs(60), || async {
        Ok(match sas.get_opt("default").await? {
            Some(_) => Ok(()),
            None => Err("not yet".to_string()),
        })
    })
    .await?;
    create_pods(client, c, &c.pods.iter().map(|p| p.name.clone()).collect()).await
}

/// Creates the named pods of a case, bound to their nodes, with their usage annotations.
async fn create_pods(client: &Client, c: &Case, names: &BTreeSet<String>) -> anyhow::Result<()> {
    let ns = c.ns();
    let uid = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("vms").await?.uid().context("owner without uid")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for p in c.pods.iter().filter(|p| names.contains(&p.name)) {
        let r = p.requests.unwrap_or(DEFAULT_REQUESTS);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": p.name,
                "labels": {CASE_LABEL: c.name, "vm.kubevirt.io/name": p.name},
                "annotations": {
                    "kwok.x-k8s.io/usage-cpu": format!("{}m", millis(p.cpu)),
                    "kwok.x-k8s.io/usage-memory": format!("{}Mi", mib(p.memory)),
                },
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "vms", "uid": uid,
                                     "controller": true}],
            },
            "spec": {
                "nodeName": c.node_name(&p.node),
                "automountServiceAccountToken": false,
                "tolerations": [{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [{"name": "compute", "image": "virt-launcher",
                                "resources": {"requests": {"cpu": format!("{}m", millis(r.cpu)),
                                                           "memory": format!("{}Mi", mib(r.memory))}}}],
            },
        }))?;
        pods.create(&PostParams::default(), &pod).await.with_context(|| format!("creating pod {}", p.name))?;
    }
    Ok(())
}

/// Within 3% (CPU is a rate over the last scrape, within 1% of the annotation).
fn close(got: i64, want: i64) -> bool {
    (got - want).abs() as f64 <= want as f64 * 0.03 + 5.0
}

/// Polls until metrics.k8s.io shows every case's pods and nodes at their usage (a node's is its pods').
async fn wait_for_usage(client: &Client, cases: &[Case]) -> anyhow::Result<()> {
    eventually("metrics.k8s.io shows every case's pod and node usage", Duration::from_secs(180), || async {
        let nodes = node_metrics(client).await?;
        let mut missing = Vec::new();
        for c in cases {
            let pods = pod_metrics(client, &c.ns()).await?;
            let mut per_node: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
            for p in &c.pods {
                let want = (millis(p.cpu), mib(p.memory) << 20);
                let e = per_node.entry(&p.node).or_default();
                e.0 += want.0;
                e.1 += want.1;
                match pods.get(&p.name) {
                    Some(&(cpu, mem)) if close(cpu, want.0) && close(mem, want.1) => {}
                    got => missing.push(format!("pod {}/{}: {got:?}, want {want:?}", c.ns(), p.name)),
                }
            }
            for (n, want) in per_node {
                let name = c.node_name(n);
                match nodes.get(&name) {
                    Some(&(cpu, mem)) if close(cpu, want.0) && close(mem, want.1) => {}
                    got => missing.push(format!("node {name}: {got:?}, want {want:?}")),
                }
            }
        }
        Ok(if missing.is_empty() { Ok(()) } else { Err(format!("{} not yet, e.g. {}", missing.len(), missing[0])) })
    })
    .await
}

/// What the descheduler logs when the environment, not the policy, decided a pod's fate: it could not read
/// the pod's usage from metrics.k8s.io (metrics-server leaves out the pods of a node whose scrape failed)
/// or the eviction call failed. It then skips the pod and goes on, so that run's evictions say nothing
/// about the policy.
const NOT_A_DECISION: [&str; 2] = ["unable to get pod usage", "eviction failed"];
const ATTEMPTS: usize = 3;

/// Runs the descheduler on the case until a run is the policy's decision: after a run that logged one of
/// [`NOT_A_DECISION`], the evicted pods are put back and the case waits for its metrics again.
async fn run_decided(
    client: &Client,
    bin: &std::path::Path,
    c: &Case,
    dir: &std::path::Path,
) -> anyhow::Result<BTreeSet<String>> {
    for attempt in 1..=ATTEMPTS {
        let (evicted, faults) = run_once(client, bin, c, dir, attempt).await?;
        if faults.is_empty() {
            return Ok(evicted);
        }
        eprintln!("    attempt {attempt} was not the policy's decision; the descheduler logged:");
        for f in &faults {
            eprintln!("      {}", f.split("] ").nth(1).unwrap_or(f));
        }
        if attempt == ATTEMPTS {
            break;
        }
        put_back(client, c, &evicted).await?;
        wait_for_usage(client, std::slice::from_ref(c)).await?;
    }
    bail!(
        "in {ATTEMPTS} runs the descheduler never decided without a metrics or eviction error (logs in {})",
        dir.display()
    )
}

/// Recreates the pods a run evicted once they are gone, and waits until metrics-server has scraped the new
/// ones (a PodMetrics may still be the evicted pod's).
async fn put_back(client: &Client, c: &Case, evicted: &BTreeSet<String>) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &c.ns());
    eventually(&format!("evicted pods of {} gone", c.name), Duration::from_secs(60), || async {
        let left: Vec<String> = pods.list(&ListParams::default()).await?.items.iter().map(|p| p.name_any()).collect();
        let back: Vec<&String> = left.iter().filter(|p| evicted.contains(*p)).collect();
        Ok(if back.is_empty() { Ok(()) } else { Err(format!("{back:?} still there")) })
    })
    .await?;
    create_pods(client, c, evicted).await?;
    eventually(&format!("recreated pods of {} scraped", c.name), Duration::from_secs(120), || async {
        let scraped = pod_metrics_scraped(client, &c.ns()).await?;
        let stale: Vec<String> = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|p| evicted.contains(&p.name_any()))
            .filter(|p| scraped.get(&p.name_any()).is_none_or(|at| Some(at) <= p.metadata.creation_timestamp.as_ref()))
            .map(|p| p.name_any())
            .collect();
        Ok(if stale.is_empty() { Ok(()) } else { Err(format!("{stale:?} not yet")) })
    })
    .await?;
    Ok(())
}

/// Runs the descheduler once on the case's nodes; the pods it evicted (gone or being deleted once it has
/// exited) and the log lines that make the run [`NOT_A_DECISION`]. Its log must show every node
/// classified (so that "nothing evicted" is a decision, not a failure), and the pods it logged as evicted
/// must be exactly the deleted ones.
async fn run_once(
    client: &Client,
    bin: &std::path::Path,
    c: &Case,
    dir: &std::path::Path,
    attempt: usize,
) -> anyhow::Result<(BTreeSet<String>, Vec<String>)> {
    let policy = dir.join(format!("{}.yaml", c.name));
    std::fs::write(&policy, serde_yaml::to_string(&c.policy())?)?;
    let log = match attempt {
        1 => dir.join(format!("{}.log", c.name)),
        n => dir.join(format!("{}.{n}.log", c.name)),
    };
    let out = std::fs::File::create(&log)?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args(["--kubeconfig", &kubeconfig_path().to_string_lossy()])
        .args(["--policy-config-file", &policy.to_string_lossy()])
        .args(["--descheduling-interval", "0s", "--secure-port", "0", "--disable-metrics", "--v", "3"])
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let status = match tokio::time::timeout(Duration::from_secs(120), child.wait()).await {
        Ok(s) => s?,
        Err(_) => bail!("the descheduler did not exit within 120 s (log {})", log.display()),
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    ensure!(status.success(), "the descheduler failed ({status}); log {}:\n{}", log.display(), tail(&text, 30));
    for n in &c.nodes {
        let name = c.node_name(&n.name);
        let classified = text.lines().any(|l| {
            (l.contains("Node has been classified") || l.contains("Node is appropriately utilized"))
                && l.contains(&format!("node=\"{name}\""))
        });
        ensure!(classified, "node {name} was never classified; log {}:\n{}", log.display(), tail(&text, 30));
    }
    let logged: BTreeSet<String> = text
        .lines()
        .filter(|l| l.contains("\"Evicted pod\""))
        .filter_map(|l| l.split(&format!("pod=\"{}/", c.ns())).nth(1)?.split('"').next().map(str::to_string))
        .collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &c.ns());
    let present: BTreeSet<String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    let deleted: BTreeSet<String> = c.pods.iter().map(|p| p.name.clone()).filter(|p| !present.contains(p)).collect();
    ensure!(
        logged == deleted,
        "the descheduler logged evictions of {logged:?} but {deleted:?} are deleted; log {}",
        log.display()
    );
    eprintln!("    ran in {:.1}s, log {}", started.elapsed().as_secs_f64(), log.display());
    for l in text.lines().filter(|l| l.contains("Node has been classified") || l.contains("appropriately utilized")) {
        eprintln!("    {}", l.split("] ").nth(1).unwrap_or(l));
    }
    let faults = text.lines().filter(|l| NOT_A_DECISION.iter().any(|f| l.contains(f))).map(str::to_string).collect();
    Ok((deleted, faults))
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Deletes every case namespace and node (from this run or an interrupted earlier one): namespaces first,
/// so that KWOK still deletes their pods (a pod on a deleted node waits for the pod garbage collector).
async fn cleanup(client: &Client) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(CASE_LABEL);
    for ns in nss.list(&lp).await?.items {
        let _ = nss.delete(&ns.name_any(), &DeleteParams::default()).await;
    }
    eventually("descheduler case namespaces gone", Duration::from_secs(120), || async {
        let left = nss.list(&lp).await?.items.len();
        Ok(if left == 0 { Ok(()) } else { Err(format!("{left} left")) })
    })
    .await?;
    for n in nodes.list(&lp).await?.items {
        let _ = nodes.delete(&n.name_any(), &DeleteParams::default()).await;
    }
    eventually("descheduler case nodes gone", Duration::from_secs(60), || async {
        let left = nodes.list(&lp).await?.items.len();
        Ok(if left == 0 { Ok(()) } else { Err(format!("{left} left")) })
    })
    .await
}
