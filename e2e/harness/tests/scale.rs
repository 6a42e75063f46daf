//! The scale bench of kubedrs on the local control plane (run by `e2e/scale`, which brings up the cluster
//! with `E2E_SCALE_NODES` KWOK nodes): VMIs are created directly through the real API server (virt-api's
//! webhooks admit them, virt-controller makes their launcher pods, kube-scheduler binds them, the node
//! emulator runs them), in steps (`E2E_SCALE_VMS`, default `1000,3000,10000`). At each step a fresh
//! operator runs behind a counting proxy ([`ApiProxy`]) and the bench measures:
//!
//! - its resident memory (`VmRSS` sampled every second, `VmHWM`), what its allocator says it holds and keeps
//!   (`kubedrs_heap_allocated_bytes`, `kubedrs_heap_resident_bytes` on `/metrics`), and the time to `/readyz`;
//! - its pass time (the operator's `pass ... seconds=` log lines, observe to status);
//! - the requests it sends per second at rest and during an evacuation (the proxy's count; writes apart);
//! - the API server's CPU (utime + stime of kube-apiserver) per second, without kubedrs, with it at rest and
//!   during the evacuation;
//! - the time from a node's maintenance annotation to the first migration (polled every 100 ms);
//! - the average JSON size of the objects it caches (pods, VMIs, VMs) without managed fields.
//!
//! Each step appends a row to `<log dir>/scale-results.tsv`; `docs/benchmarks.md` (Scale) has the figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use kube::api::{DynamicObject, ListParams, PostParams};
use kubedrs_e2e::harness::*;
use kubedrs_e2e::kubevirt::str_at;
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);

fn knob(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// A VMI of 1 vCPU and 1 GiB (10 fit a KWOK node many times over), admitted by virt-api like any other.
fn vmi_json(name: &str, ns: &str) -> Value {
    let v = vm(name).cpus(1).memory("1Gi").to_json(ns);
    let t = &v["spec"]["template"];
    json!({
        "apiVersion": v["apiVersion"],
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": ns, "labels": t["metadata"]["labels"],
                     "annotations": t["metadata"]["annotations"]},
        "spec": t["spec"],
    })
}

/// `VmRSS` and `VmHWM` of `pid`, MiB.
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| -> Option<f64> {
        let l = s.lines().find(|l| l.starts_with(k))?;
        Some(l.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU seconds (user + system) `pid` has used.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The API server's CPU seconds used since [`ApiserverCpu::start`], per second of wall time.
struct ApiserverCpu {
    pid: u32,
    cpu0: f64,
    t0: Instant,
}

impl ApiserverCpu {
    fn start() -> anyhow::Result<ApiserverCpu> {
        let pid = Component::new("kube-apiserver").pid()?;
        Ok(ApiserverCpu { pid, cpu0: cpu_seconds(pid).context("apiserver stat")?, t0: Instant::now() })
    }

    fn per_second(&self) -> anyhow::Result<f64> {
        Ok((cpu_seconds(self.pid).context("apiserver stat")? - self.cpu0) / self.t0.elapsed().as_secs_f64())
    }
}

/// The API server's CPU per second over `period`.
async fn apiserver_cpu(period: Duration) -> anyhow::Result<f64> {
    let cpu = ApiserverCpu::start()?;
    // Measuring over a window is the point: no state to wait for.
    tokio::time::sleep(period).await;
    cpu.per_second()
}

/// A gauge of the operator's `/metrics`, MiB.
fn gauge_mib(port: u16, name: &str) -> Option<f64> {
    Some(metric_value(&http_get(port, "/metrics").ok()?, name, &[])? / 1048576.0)
}

/// Pass durations (seconds) of the operator's log, from line `from` on.
fn pass_seconds(log: &str, from: usize) -> Vec<f64> {
    log.lines()
        .skip(from)
        .map(strip_ansi)
        .filter(|l| l.contains(" pass ") && l.contains("pool=scale"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("seconds=")?.parse().ok()))
        .collect()
}

fn strip_ansi(l: &str) -> String {
    let mut out = String::with_capacity(l.len());
    let mut chars = l.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Average JSON size (bytes, managed fields dropped) of up to 200 objects of `api`.
async fn avg_json_size(api: &kube::Api<DynamicObject>) -> anyhow::Result<usize> {
    let items = api.list(&ListParams::default().limit(200)).await?.items;
    if items.is_empty() {
        return Ok(0);
    }
    let count = items.len();
    let total: usize = items
        .into_iter()
        .map(|mut o| {
            o.metadata.managed_fields = None;
            serde_json::to_vec(&o).map(|v| v.len()).unwrap_or(0)
        })
        .sum();
    Ok(total / count)
}

async fn running_vmis(s: &Scenario) -> anyhow::Result<(usize, usize)> {
    let l = s.vmis().list(&ListParams::default().match_any()).await?.items;
    let running = l.iter().filter(|v| v.data["status"]["phase"] == "Running").count();
    Ok((running, l.len()))
}

#[tokio::test]
async fn scale_bench() -> anyhow::Result<()> {
    let steps: Vec<usize> = knob("E2E_SCALE_VMS", "1000,3000,10000")
        .split(',')
        .map(|x| x.trim().parse().with_context(|| format!("E2E_SCALE_VMS: {x:?} is not a number")))
        .collect::<anyhow::Result<_>>()?;
    let timeout = MIN * knob("E2E_SCALE_STEP_MINUTES", "75").parse::<u32>().context("E2E_SCALE_STEP_MINUTES")?;
    let mut s = Scenario::start("scale", &[]).await?;
    let nodes = cluster_nodes(&s.client).await?;
    eprintln!("  {} KWOK nodes", nodes.len());
    s.start_emulator(&["--migration-rate", "4096", "--phase-step-ms", "100"])?;
    s.create_pool(json!({"nodeSelector": {"matchLabels": {"type": "kwok"}}})).await?;
    let results = log_dir().join("scale-results.tsv");
    let mut created = 0usize;
    for (i, &n) in steps.iter().enumerate() {
        eprintln!("== step {n} VMs on {} nodes", nodes.len());
        let t = Instant::now();
        let errors = Arc::new(AtomicU64::new(0));
        let api = s.vmis();
        let ns = s.ns.clone();
        futures::stream::iter(created..n)
            .map(|k| {
                let (api, ns, errors) = (api.clone(), ns.clone(), errors.clone());
                async move {
                    let name = format!("vm-{k:05}");
                    let obj: DynamicObject = match serde_json::from_value(vmi_json(&name, &ns)) {
                        Ok(o) => o,
                        Err(_) => return,
                    };
                    if api.create(&PostParams::default(), &obj).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        let errs = errors.load(Ordering::Relaxed);
        let create_s = t.elapsed().as_secs_f64();
        eprintln!("  created {} VMIs in {create_s:.0}s ({errs} refused)", n - created);
        created = n;
        // Listing thousands of VMIs is work for the API server: every 10 s, not every 500 ms.
        loop {
            let (running, total) = running_vmis(&s).await?;
            eprintln!("  {:>5.0}s: {running}/{total} Running", t.elapsed().as_secs_f64());
            if running >= n {
                break;
            }
            if t.elapsed() > timeout {
                bail!("{n} VMIs not Running after {timeout:?}: {running}/{total}");
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let running_s = t.elapsed().as_secs_f64();
        eprintln!("  all Running {:.0}s after the first create", running_s);

        let cpu_without = apiserver_cpu(Duration::from_secs(30)).await?;
        let proxy = ApiProxy::start(&format!("scale-proxy-{n}")).await?;
        let t_op = Instant::now();
        let (idx, port) = s.start_operator_env(
            &format!("{n}"),
            &["--demand-interval", "30s"],
            &[("KUBECONFIG", proxy.kubeconfig.display().to_string())],
        )?;
        let pid = s.children[idx].pid();
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                while let Some((rss, _)) = memory_mib(pid) {
                    peak.fetch_max((rss * 1024.0) as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        loop {
            if !s.children[idx].is_running() {
                bail!("kubedrs exited:\n{}", s.children[idx].log_text());
            }
            if http_get(port, "/readyz").is_ok_and(|b| b.contains("ok") || b.contains("ready")) {
                break;
            }
            if t_op.elapsed() > 10 * MIN {
                bail!("kubedrs not ready 10 minutes after its start");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let ready_s = t_op.elapsed().as_secs_f64();
        let pool = s.pool.clone();
        eventually(&format!("HostPool status counts {n} VMs"), 10 * MIN, || async {
            let st = s.pool_status().await?;
            let vms = st["vms"].as_u64().unwrap_or(0) as usize;
            Ok(if vms >= n { Ok(()) } else { Err(format!("status.vms={vms} ({pool})")) })
        })
        .await?;
        let status_s = t_op.elapsed().as_secs_f64();

        // At rest: one minute of passes.
        let log_from = s.children[idx].log_text().lines().count();
        let (r0, _, w0) = proxy.traffic();
        let rest = Duration::from_secs(60);
        let t_rest = Instant::now();
        let cpu_with = apiserver_cpu(rest).await?;
        let (r1, _, w1) = proxy.traffic();
        let rest_s = t_rest.elapsed().as_secs_f64();
        let passes = pass_seconds(&s.children[idx].log_text(), log_from);
        let mean_pass = passes.iter().sum::<f64>() / passes.len().max(1) as f64;
        let max_pass = passes.iter().copied().fold(0.0, f64::max);

        // An evacuation: the node of the first VMI of this step.
        let victim = {
            let v = s.vmis().get(&format!("vm-{:05}", n - 1)).await?;
            str_at(&to_json(v), &["status", "nodeName"]).context("no node")?.to_string()
        };
        let on_victim = s.placement().await?.values().filter(|x| **x == victim).count();
        let before_migs = s.list_vmims().await?.len();
        let (e0, _, ew0) = proxy.traffic();
        let evac_cpu = ApiserverCpu::start()?;
        let t_evac = Instant::now();
        s.annotate_node(&victim, MAINTENANCE, Some("true")).await?;
        let first = loop {
            if s.list_vmims().await?.len() > before_migs {
                break t_evac.elapsed();
            }
            if t_evac.elapsed() > 5 * MIN {
                bail!("no migration within 5 minutes of the maintenance annotation on {victim}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eventually(&format!("{victim} InMaintenance"), 10 * MIN, || async {
            let n = s.node(&victim).await?;
            let st = n.metadata.annotations.unwrap_or_default().get(MAINTENANCE_STATE).cloned().unwrap_or_default();
            Ok(if st == "InMaintenance" { Ok(()) } else { Err(st) })
        })
        .await?;
        let evac_s = t_evac.elapsed().as_secs_f64();
        let (e1, _, ew1) = proxy.traffic();
        let cpu_evac = evac_cpu.per_second()?;
        let (rss, hwm) = memory_mib(pid).unwrap_or((0.0, 0.0));
        let heap = gauge_mib(port, "kubedrs_heap_allocated_bytes").unwrap_or(0.0);
        let heap_resident = gauge_mib(port, "kubedrs_heap_resident_bytes").unwrap_or(0.0);
        let peak_rss = peak.load(Ordering::Relaxed) as f64 / 1024.0;
        s.children[idx].terminate(Duration::from_secs(10));
        sampler.abort();

        let pod_size = avg_json_size(&kube::Api::namespaced_with(
            s.client.clone(),
            &s.ns,
            &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
        ))
        .await?;
        let vmi_size = avg_json_size(&s.vmis()).await?;
        let row = format!(
            "{n}\t{}\t{rss:.0}\t{hwm:.0}\t{peak_rss:.0}\t{ready_s:.1}\t{status_s:.1}\t{mean_pass:.3}\t{max_pass:.3}\t{}\t{:.2}\t{:.1}\t{:.2}\t{:.1}\t{:.2}\t{:.2}\t{cpu_evac:.2}\t{heap:.0}\t{heap_resident:.0}\t{on_victim}\t{:.1}\t{evac_s:.1}\t{pod_size}\t{vmi_size}\t{create_s:.0}\t{running_s:.0}\n",
            nodes.len(),
            passes.len(),
            (r1 - r0) as f64 / rest_s,
            (w1 - w0) as f64 / rest_s * 60.0,
            (e1 - e0) as f64 / evac_s,
            (ew1 - ew0) as f64 / evac_s,
            cpu_without,
            cpu_with,
            first.as_secs_f64(),
        );
        if i == 0 && !results.exists() {
            std::fs::write(
                &results,
                "vms\tnodes\trss_mib\thwm_mib\tpeak_rss_mib\tready_s\tstatus_s\tpass_mean_s\tpass_max_s\tpasses\trest_req_s\trest_writes_min\tevac_req_s\tevac_writes_s\tapiserver_cpu_without\tapiserver_cpu_with\tapiserver_cpu_evac\theap_alloc_mib\theap_resident_mib\tvms_on_node\tfirst_migration_s\tevacuation_s\tpod_json_b\tvmi_json_b\tcreate_s\trunning_s\n",
            )?;
        }
        let mut text = std::fs::read_to_string(&results).unwrap_or_default();
        text.push_str(&row);
        std::fs::write(&results, text)?;
        eprintln!("  RESULT {}", row.trim_end());
    }
    // The cluster goes down with `e2e/scale`; deleting 10,000 VMIs here would only take time.
    for c in s.children.iter_mut() {
        c.terminate(Duration::from_secs(10));
    }
    Ok(())
}
