//! `kubedrs plan`: a dry run against a live cluster.
//!
//! The operator's own [`crate::pass::pass`] in dry-run mode, from one list of every object (and one read of
//! metrics.k8s.io when it is there), with nothing written: prints, per pool, what kubedrs would do (VM,
//! FROM, TO, REASON, NOW, WHY: NOW says whether the operator would start it now, only recommend it, or
//! hold it and why), what it cannot do and why, and the imbalance against its target; `--json` prints the
//! plans and the same verdicts as JSON. Needs only read access.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::pod::CachedPod;
use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde::de::DeserializeOwned;

use crate::actuate::Action;
use crate::actuate::blocked_word;
use crate::crd::HostPool;
use crate::inventory::{list_launcher_metrics, unix_now};
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceMigration};
use crate::observe::{Cluster, DemandWindow};
use crate::pass::{PassInput, PassOutput, PassSummary, PoolMemo, Settings, pass};
use crate::tolerant::{Tolerant, readable};

/// Flags of `kubedrs plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Kubeconfig file (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Only this pool.
    #[arg(long)]
    pub pool: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(main(args))
}

/// A client from a kubeconfig file and context (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster
/// service account).
pub async fn client(kubeconfig: Option<&std::path::Path>, context: Option<&str>) -> anyhow::Result<Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = KubeConfigOptions { context: context.map(str::to_string), ..KubeConfigOptions::default() };
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None if context.is_some() => Config::from_kubeconfig(&opts).await?,
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Lists a kind object by object: one that does not parse is left out, with a warning naming its field.
async fn list<K>(client: &Client) -> anyhow::Result<Vec<Arc<K>>>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<Tolerant<K>> = Api::all(client.clone());
    let items = api.list(&ListParams::default()).await.with_context(|| format!("listing {}", K::plural(&())))?;
    let (ok, skipped) = readable(items.items, "object");
    for s in skipped {
        let ns = s.namespace.map(|n| format!("{n}/")).unwrap_or_default();
        eprintln!("warning: {} {ns}{} skipped: field {}: {}", K::kind(&()), s.name, s.field, s.error);
    }
    Ok(ok.into_iter().map(Arc::new).collect())
}

/// Lists what a VirtualMachine kind may not be installed for: an absent KubeVirt gives an empty list.
async fn list_optional<K>(client: &Client) -> anyhow::Result<Vec<Arc<K>>>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match list::<K>(client).await {
        Ok(v) => Ok(v),
        Err(e)
            if e.chain()
                .any(|c| matches!(c.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 404)) =>
        {
            eprintln!("warning: {} not served (is KubeVirt installed?)", K::plural(&()));
            Ok(vec![])
        }
        Err(e) => Err(e),
    }
}

/// One read of everything a pass needs: every object, and the launchers' usage from metrics.k8s.io when it
/// is served. `now` is Unix seconds.
pub async fn fetch(client: &Client) -> anyhow::Result<(Cluster, DemandWindow, u64)> {
    let cluster = Cluster {
        pools: list::<HostPool>(client).await?,
        nodes: list::<Node>(client).await?,
        namespaces: list::<Namespace>(client).await?,
        vms: list_optional::<VirtualMachine>(client).await?,
        vmis: list_optional::<VirtualMachineInstance>(client).await?,
        pods: list::<CachedPod>(client).await?,
        migrations: list_optional::<VirtualMachineInstanceMigration>(client).await?,
        skipped: Vec::new(),
    };
    let now = u64::try_from(unix_now()).unwrap_or(0);
    let mut demand = DemandWindow::default();
    match list_launcher_metrics(client).await {
        Ok(m) => {
            demand.record_pod_metrics(&cluster.pods, &m, now);
        }
        Err(e) => eprintln!("warning: metrics.k8s.io unavailable ({e}): demand falls back to reservations"),
    }
    Ok((cluster, demand, now))
}

/// The operator's pass over `pool` in dry-run mode (nothing written), as of `now` (Unix seconds).
pub fn dry_run(pool: &HostPool, cluster: &Cluster, demand: &DemandWindow, now: u64) -> anyhow::Result<PassOutput> {
    let at = k8s_openapi::jiff::Timestamp::from_second(i64::try_from(now).unwrap_or(0))?;
    Ok(pass(&PassInput {
        pool,
        cluster,
        demand,
        settings: Settings { dry_run: true, ..Settings::default() },
        memo: &PoolMemo::default(),
        totals: &[],
        now: at,
    }))
}

pub async fn main(args: PlanArgs) -> anyhow::Result<()> {
    let client = client(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    let (cluster, demand, now) = fetch(&client).await?;
    let names: Vec<String> = cluster
        .pools
        .iter()
        .map(|p| p.name_any())
        .filter(|n| args.pool.as_deref().is_none_or(|want| want == n))
        .collect();
    if let Some(name) = &args.pool
        && names.is_empty()
    {
        anyhow::bail!("no HostPool named {name}");
    }
    // The operator's own pass, in dry-run mode: what it would do now, nothing written.
    let mut warnings = Vec::new();
    let mut outputs = Vec::new();
    for pool in cluster.pools.iter().filter(|p| names.contains(&p.name_any())) {
        let out = dry_run(pool, &cluster, &demand, now)?;
        warnings = out.warnings.clone();
        outputs.push((pool.name_any(), out));
    }
    if args.json {
        let out: Vec<serde_json::Value> = outputs
            .iter()
            .map(|(name, o)| match (&o.planned, &o.invalid, &o.refused) {
                (Some(p), _, _) => serde_json::json!({
                    "pool": name,
                    "plan": p.plan,
                    "now": verdicts(p),
                    "conflictingNodes": p.conflicts,
                }),
                (None, Some(e), _) => serde_json::json!({"pool": name, "error": e}),
                (None, None, Some(e)) => serde_json::json!({"pool": name, "error": e.to_string()}),
                (None, None, None) => serde_json::json!({"pool": name, "error": "no snapshot"}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for w in &warnings {
            eprintln!("warning: {:?}: {}", w.target, w.note);
        }
        for (name, o) in &outputs {
            let result = match (&o.planned, &o.invalid, &o.refused) {
                (Some(p), _, _) => Ok(p),
                (None, Some(e), _) => Err(e.clone()),
                (None, None, Some(e)) => Err(e.to_string()),
                (None, None, None) => Err("no snapshot".to_string()),
            };
            print!("{}", format_pool(name, result));
        }
    }
    Ok(())
}

/// What the operator would do now with each VM of the plan: `now`, `recommend: why` or `held: why`.
pub fn verdicts(p: &PassSummary) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in &p.decision.actions {
        match a {
            Action::CreateMigration { namespace, vmi, .. } => {
                out.insert(format!("{namespace}/{vmi}"), "now".to_string());
            }
            Action::Bind { vm, .. } => {
                out.insert(vm.clone(), "now".to_string());
            }
            _ => {}
        }
    }
    for r in &p.decision.recommendations {
        out.insert(r.vm.clone(), format!("recommend: {}", r.why));
    }
    for h in &p.decision.held {
        out.insert(h.vm.clone(), format!("held: {}", h.why));
    }
    out
}

/// Columns padded to the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = width[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The text report of one pool.
pub fn format_pool(name: &str, planned: Result<&PassSummary, String>) -> String {
    let mut out = format!("Pool {name}");
    let p = match planned {
        Err(e) => return format!("{out}: cannot plan: {e}\n\n"),
        Ok(p) => p,
    };
    let (plan, snap) = (&p.plan, &p.snapshot);
    let now = verdicts(p);
    out.push_str(&format!(
        ": {} nodes, {} VMs, automation {:?}, imbalance {:.4} -> {:.4} (target {:.4})\n",
        snap.nodes.len(),
        snap.vms.len(),
        snap.pool.automation,
        plan.imbalance_before,
        plan.imbalance_after,
        plan.target_imbalance
    ));
    match &plan.baseline.model {
        Some(m) => out.push_str(&format!("CPU baseline: {m}\n")),
        None => out.push_str(&format!("CPU baseline: none ({})\n", plan.baseline.why.clone().unwrap_or_default())),
    }
    if !plan.balance_summary.is_empty() {
        out.push_str(&format!("Balancing: {}\n", plan.balance_summary));
    }
    let mut rows: Vec<Vec<String>> = plan
        .placements
        .iter()
        .map(|pl| {
            let when = now.get(&pl.vm).cloned().unwrap_or_else(|| "-".into());
            vec![pl.vm.clone(), "-".into(), pl.node.clone(), "placement".into(), when, pl.why.clone()]
        })
        .collect();
    rows.extend(plan.moves.iter().map(|m| {
        let mut why = m.why.clone();
        if m.recommend_only {
            why = format!("[recommend only] {why}");
        }
        if m.deferred {
            why = format!("[deferred: no slot] {why}");
        }
        let when = now.get(&m.vm).cloned().unwrap_or_else(|| "-".into());
        vec![m.vm.clone(), m.from.clone(), m.to.clone(), m.reason.as_str().into(), when, why]
    }));
    out.push('\n');
    if rows.is_empty() {
        out.push_str("No moves.\n");
    } else {
        out.push_str(&table(&["VM", "FROM", "TO", "REASON", "NOW", "WHY"], &rows));
    }
    if !plan.blocked.is_empty() {
        out.push_str("\nBlocked:\n");
        let rows: Vec<Vec<String>> = plan
            .blocked
            .iter()
            .map(|b| {
                vec![
                    b.vm.clone(),
                    b.node.clone().unwrap_or_else(|| "-".into()),
                    b.wanted.as_str().into(),
                    blocked_word(&b.reason).into(),
                    b.why.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&["VM", "NODE", "WANTED", "REASON", "WHY"], &rows));
    }
    for r in &plan.rule_notes {
        out.push_str(&format!("\nRule {}: {} ({})\n", r.rule, r.why, r.vms.join(", ")));
    }
    let conflicts: BTreeMap<&str, String> = p.conflicts.iter().map(|c| (c.node.as_str(), c.pools.join(", "))).collect();
    for (node, pools) in conflicts {
        out.push_str(&format!("\nNode {node} is matched by pools {pools}: left alone\n"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fixtures::*;

    #[test]
    fn a_maintenance_move_reads_as_a_table_row() {
        let cluster = one_vm_leaving_n1();
        let out = dry_run(&cluster.pools[0], &cluster, &DemandWindow::default(), 1000).unwrap();
        let text = format_pool("prod", Ok(out.planned.as_ref().unwrap()));
        assert!(text.contains("VM       FROM   TO   REASON        NOW"), "{text}");
        assert!(
            text.contains("shop/a   n1     n2   maintenance   recommend: dry run; node n1 is in maintenance"),
            "{text}"
        );
    }
}
