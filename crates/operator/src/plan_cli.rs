//! `kubedrs plan`: a dry run against a live cluster.
//!
//! The same **observe -> plan** as the operator, from one list of every object (and one read of
//! metrics.k8s.io when it is there), with nothing written: prints, per pool, what kubedrs would do (VM,
//! FROM, TO, REASON, WHY), what it cannot do and why, and the imbalance against its target; `--json` prints
//! the plans as JSON. Needs only read access.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::de::DeserializeOwned;

use crate::actuate::blocked_word;
use crate::crd::HostPool;
use crate::inventory::{list_launcher_metrics, unix_now};
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceMigration};
use crate::observe::{Cluster, DemandWindow, PoolObservation, observe};
use kubedrs_engine::Plan;

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

async fn client(args: &PlanArgs) -> anyhow::Result<Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = KubeConfigOptions { context: args.context.clone(), ..KubeConfigOptions::default() };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&opts).await?,
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

async fn list<K>(client: &Client) -> anyhow::Result<Vec<Arc<K>>>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let items = api.list(&ListParams::default()).await.with_context(|| format!("listing {}", K::plural(&())))?;
    Ok(items.items.into_iter().map(Arc::new).collect())
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

async fn main(args: PlanArgs) -> anyhow::Result<()> {
    let client = client(&args).await?;
    let cluster = Cluster {
        pools: list::<HostPool>(&client).await?,
        nodes: list::<Node>(&client).await?,
        namespaces: list::<Namespace>(&client).await?,
        vms: list_optional::<VirtualMachine>(&client).await?,
        vmis: list_optional::<VirtualMachineInstance>(&client).await?,
        pods: list::<Pod>(&client).await?,
        migrations: list_optional::<VirtualMachineInstanceMigration>(&client).await?,
    };
    let now = u64::try_from(unix_now()).unwrap_or(0);
    let mut demand = DemandWindow::default();
    match list_launcher_metrics(&client).await {
        Ok(m) => {
            demand.record_pod_metrics(&cluster.pods, &m, now);
        }
        Err(e) => eprintln!("warning: metrics.k8s.io unavailable ({e}): demand falls back to reservations"),
    }
    let obs = observe(&cluster, &demand, now);
    let pools: Vec<&PoolObservation> =
        obs.pools.iter().filter(|p| args.pool.as_deref().is_none_or(|n| n == p.name)).collect();
    if let Some(name) = &args.pool
        && pools.is_empty()
    {
        anyhow::bail!("no HostPool named {name}");
    }
    let plans: Vec<(&PoolObservation, Result<Plan, String>)> = pools
        .into_iter()
        .map(|p| {
            let plan = match (&p.config, &p.snapshot) {
                (Err(e), _) => Err(e.to_string()),
                (Ok(_), Some(s)) => kubedrs_engine::plan(s).map_err(|e| e.to_string()),
                (Ok(_), None) => Err("no snapshot".into()),
            };
            (p, plan)
        })
        .collect();
    if args.json {
        let out: Vec<serde_json::Value> = plans
            .iter()
            .map(|(p, plan)| match plan {
                Ok(plan) => serde_json::json!({"pool": p.name, "plan": plan, "conflictingNodes": p.conflicting_nodes}),
                Err(e) => serde_json::json!({"pool": p.name, "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for w in &obs.warnings {
            eprintln!("warning: {} {}: {}", w.kind, w.name, w.message);
        }
        for (p, plan) in &plans {
            print!("{}", format_pool(p, plan));
        }
    }
    Ok(())
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
pub fn format_pool(p: &PoolObservation, plan: &Result<Plan, String>) -> String {
    let mut out = format!("Pool {}", p.name);
    let plan = match plan {
        Err(e) => return format!("{out}: cannot plan: {e}\n\n"),
        Ok(plan) => plan,
    };
    let snap = p.snapshot.as_ref();
    out.push_str(&format!(
        ": {} nodes, {} VMs, automation {:?}, imbalance {:.4} -> {:.4} (target {:.4})\n",
        snap.map_or(0, |s| s.nodes.len()),
        snap.map_or(0, |s| s.vms.len()),
        snap.map(|s| s.pool.automation).unwrap_or_default(),
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
        .map(|pl| vec![pl.vm.clone(), "-".into(), pl.node.clone(), "placement".into(), pl.why.clone()])
        .collect();
    rows.extend(plan.moves.iter().map(|m| {
        let mut why = m.why.clone();
        if m.recommend_only {
            why = format!("[recommend only] {why}");
        }
        if m.deferred {
            why = format!("[deferred: no slot] {why}");
        }
        vec![m.vm.clone(), m.from.clone(), m.to.clone(), m.reason.as_str().into(), why]
    }));
    out.push('\n');
    if rows.is_empty() {
        out.push_str("No moves.\n");
    } else {
        out.push_str(&table(&["VM", "FROM", "TO", "REASON", "WHY"], &rows));
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
    let conflicts: BTreeMap<&str, String> =
        p.conflicting_nodes.iter().map(|c| (c.node.as_str(), c.pools.join(", "))).collect();
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
    use crate::keys;

    #[test]
    fn a_maintenance_move_reads_as_a_table_row() {
        let a = vmi("shop/a").on("n1").cpus(1).memory("1Gi").build();
        let cluster = Cluster {
            pools: vec![Arc::new(pool("prod").selects(keys::POOL, "prod").build())],
            nodes: vec![
                Arc::new(node("n1").cpu("16").memory("64Gi").in_pool("prod").maintenance().build()),
                Arc::new(node("n2").cpu("16").memory("64Gi").in_pool("prod").build()),
            ],
            pods: vec![Arc::new(launcher(&a).build())],
            vmis: vec![Arc::new(a)],
            ..Cluster::default()
        };
        let obs = observe(&cluster, &DemandWindow::default(), 1000);
        let p = obs.pool("prod").unwrap();
        let plan = kubedrs_engine::plan(p.snapshot.as_ref().unwrap()).map_err(|e| e.to_string());
        let text = format_pool(p, &plan);
        assert!(text.contains("VM       FROM   TO   REASON        WHY"), "{text}");
        assert!(text.contains("shop/a   n1     n2   maintenance   node n1 is in maintenance"), "{text}");
    }
}
