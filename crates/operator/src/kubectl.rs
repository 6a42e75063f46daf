//! `kubectl drs`: the kubedrs binary installed (or linked) as `kubectl-drs`, a kubectl plugin for the daily
//! work of a platform team, as `virtctl` is for KubeVirt. Also reachable as `kubedrs drs ...`.
//!
//! - `maintenance enter NODE [--wait]`: sets `kubedrs.io/maintenance=true`; with `--wait`, follows the node
//!   (a watch, not a poll) and prints each change of `kubedrs.io/maintenance-state` and its message (what is
//!   left, what blocks and why) until `InMaintenance`;
//! - `maintenance exit NODE [--wait]`: removes the annotation; with `--wait`, until kubedrs has removed its
//!   marks (and uncordoned the node if it had cordoned it);
//! - `status [POOL]`: the pools' status in one table, then what each pool reports (conditions, blocked VMs,
//!   recommendations) and the nodes in maintenance;
//! - `plan [POOL]`: the operator's own pass in dry-run mode (as `kubedrs plan`);
//! - `explain VM`: where the VM runs, its pool, and what the plan says about it, with the reason.
//!
//! Everything but `maintenance` only reads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::crd::HostPool;
use crate::keys;
use crate::plan_cli::{self, PlanArgs};

/// `kubectl drs`: kubedrs, the Distributed Resource Scheduler for KubeVirt, from kubectl.
#[derive(Debug, clap::Parser)]
#[command(name = "kubectl-drs", bin_name = "kubectl drs", version)]
pub struct KubectlDrs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: DrsCommand,
}

/// Which cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Kubeconfig file (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum DrsCommand {
    /// Put a node in maintenance, or take it out (kubedrs empties it by live migration).
    Maintenance {
        #[command(subcommand)]
        action: MaintenanceAction,
    },
    /// The pools: imbalance, migrations, what is blocked and why, nodes in maintenance.
    Status {
        /// Only this pool.
        pool: Option<String>,
    },
    /// What kubedrs would do now (the operator's pass, nothing written).
    Plan {
        /// Only this pool.
        pool: Option<String>,
        /// JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Where a VM runs, why there, and what kubedrs plans for it.
    Explain {
        /// The VM: `name` (with -n) or `namespace/name`.
        vm: String,
        /// Namespace of the VM.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum MaintenanceAction {
    /// Annotate the node `kubedrs.io/maintenance=true`.
    Enter {
        node: String,
        /// Follow the node until it is `InMaintenance`.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (exit code 1).
        #[arg(long, default_value = "1h", value_parser = crate::crd::parse_duration)]
        timeout: Duration,
    },
    /// Remove the annotation; kubedrs uncordons the node if it had cordoned it.
    Exit {
        node: String,
        /// Follow the node until kubedrs has removed its marks.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (exit code 1).
        #[arg(long, default_value = "10m", value_parser = crate::crd::parse_duration)]
        timeout: Duration,
    },
}

/// Runs the plugin.
pub fn run(args: KubectlDrs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(main(args))
}

async fn main(args: KubectlDrs) -> anyhow::Result<()> {
    let conn = args.connection;
    if let DrsCommand::Plan { pool, json } = args.command {
        return plan_cli::main(PlanArgs { kubeconfig: conn.kubeconfig, context: conn.context, pool, json }).await;
    }
    let client = plan_cli::client(conn.kubeconfig.as_deref(), conn.context.as_deref()).await?;
    match args.command {
        DrsCommand::Maintenance { action: MaintenanceAction::Enter { node, wait, timeout } } => {
            set_maintenance(&client, &node, true).await?;
            println!("node/{node} annotated {}=true", keys::MAINTENANCE);
            if wait {
                follow(&client, &node, timeout, |s| s.state.as_deref() == Some("InMaintenance")).await?;
            }
            Ok(())
        }
        DrsCommand::Maintenance { action: MaintenanceAction::Exit { node, wait, timeout } } => {
            set_maintenance(&client, &node, false).await?;
            println!("node/{node}: {} removed", keys::MAINTENANCE);
            if wait {
                follow(&client, &node, timeout, |s| s.state.is_none() && !s.cordoned_by_kubedrs).await?;
            }
            Ok(())
        }
        DrsCommand::Status { pool } => status(&client, pool.as_deref()).await,
        DrsCommand::Explain { vm, namespace } => explain(&client, &vm, &namespace).await,
        DrsCommand::Plan { .. } => Ok(()),
    }
}

async fn set_maintenance(client: &Client, node: &str, on: bool) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    api.get(node).await.with_context(|| format!("node {node}"))?;
    let value = if on { serde_json::json!("true") } else { serde_json::Value::Null };
    let patch = serde_json::json!({"metadata": {"annotations": {keys::MAINTENANCE: value}}});
    api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("patching node {node}"))?;
    Ok(())
}

/// What kubedrs has written on a node about maintenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMarks {
    pub state: Option<String>,
    pub message: Option<String>,
    pub cordoned_by_kubedrs: bool,
    pub unschedulable: bool,
}

impl NodeMarks {
    pub fn of(n: &Node) -> Self {
        let ann = |k: &str| n.metadata.annotations.as_ref().and_then(|a| a.get(k)).cloned();
        NodeMarks {
            state: ann(keys::MAINTENANCE_STATE),
            message: ann(keys::MAINTENANCE_MESSAGE),
            cordoned_by_kubedrs: ann(keys::CORDONED_BY_KUBEDRS).as_deref() == Some("true"),
            unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        }
    }

    /// One line for the progress of `--wait`.
    pub fn line(&self) -> String {
        format!(
            "{}{}{}",
            self.state.as_deref().unwrap_or("(no maintenance state)"),
            if self.unschedulable { ", cordoned" } else { "" },
            self.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        )
    }
}

/// Watches one node and prints every change of kubedrs' marks until `done`, or fails after `timeout`.
async fn follow(client: &Client, node: &str, timeout: Duration, done: fn(&NodeMarks) -> bool) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff().applied_objects());
    let mut last: Option<NodeMarks> = None;
    let watch = async {
        while let Some(n) = stream.next().await {
            let marks = NodeMarks::of(&n.context("watching the node")?);
            if last.as_ref() != Some(&marks) {
                println!("node/{node}: {}", marks.line());
            }
            if done(&marks) {
                return Ok(());
            }
            last = Some(marks);
        }
        bail!("the watch of node {node} ended")
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(r) => r,
        Err(_) => bail!("node {node} did not get there within {timeout:?}; `kubectl drs status` says what blocks it"),
    }
}

async fn status(client: &Client, only: Option<&str>) -> anyhow::Result<()> {
    let pools: Api<HostPool> = Api::all(client.clone());
    let mut pools: Vec<HostPool> = pools.list(&ListParams::default()).await.context("listing HostPools")?.items;
    pools.retain(|p| only.is_none_or(|o| p.name_any() == o));
    if let Some(name) = only
        && pools.is_empty()
    {
        bail!("no HostPool named {name}");
    }
    pools.sort_by_key(|p| p.name_any());
    print!("{}", status_text(&pools));
    let nodes: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(keys::MAINTENANCE_STATE);
    let in_maintenance = nodes.list(&lp).await.context("listing nodes")?.items;
    if !in_maintenance.is_empty() {
        println!("\nNodes in maintenance:");
        let rows: Vec<Vec<String>> = in_maintenance
            .iter()
            .map(|n| {
                let m = NodeMarks::of(n);
                vec![n.name_any(), m.state.unwrap_or_default(), m.message.unwrap_or_default()]
            })
            .collect();
        print!("{}", plan_cli::table(&["NODE", "STATE", "MESSAGE"], &rows));
    }
    Ok(())
}

/// The pools' status as `kubectl drs status` prints it.
pub fn status_text(pools: &[HostPool]) -> String {
    let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    let rows: Vec<Vec<String>> = pools
        .iter()
        .map(|p| {
            let st = p.status.clone().unwrap_or_default();
            let ready = st.conditions.iter().find(|c| c.type_ == "Ready").map_or("-".into(), |c| c.status.clone());
            vec![
                p.name_any(),
                ready,
                st.nodes.to_string(),
                st.vms.to_string(),
                fmt(st.imbalance),
                fmt(st.target_imbalance),
                st.migrations.in_flight.to_string(),
                format!("{:?}", p.spec.automation),
            ]
        })
        .collect();
    let mut out =
        plan_cli::table(&["POOL", "READY", "NODES", "VMS", "IMBALANCE", "TARGET", "IN-FLIGHT", "AUTOMATION"], &rows);
    for p in pools {
        let Some(st) = &p.status else { continue };
        let mut lines = Vec::new();
        for c in st.conditions.iter().filter(|c| !(c.type_ == "Ready" && c.status == "True")) {
            if (c.type_ == "Degraded" || c.type_ == "Paused") && c.status == "False" {
                continue;
            }
            lines.push(format!("  {}={} ({}): {}", c.type_, c.status, c.reason, c.message));
        }
        for b in &st.blocked {
            lines.push(format!("  blocked {}: {}", b.vm, b.message));
        }
        for r in &st.recommendations {
            lines.push(format!("  recommended {} -> {} ({}): {}", r.vm, r.to, r.reason, r.why));
        }
        if let Some(s) = &st.balance_summary {
            lines.push(format!("  balancing: {s}"));
        }
        if !lines.is_empty() {
            out.push_str(&format!("\n{}:\n{}\n", p.name_any(), lines.join("\n")));
        }
    }
    out
}

async fn explain(client: &Client, vm: &str, namespace: &str) -> anyhow::Result<()> {
    let key = if vm.contains('/') { vm.to_string() } else { format!("{namespace}/{vm}") };
    let (cluster, demand, now) = plan_cli::fetch(client).await?;
    let Some(vmi) = cluster.vmis.iter().find(|v| v.key() == key) else {
        bail!("no VirtualMachineInstance {key}: is the VM running?");
    };
    let node = vmi.node_name().unwrap_or("(not scheduled)").to_string();
    println!("{key} runs on {node}.");
    for pool in &cluster.pools {
        let out = plan_cli::dry_run(pool, &cluster, &demand, now)?;
        let Some(p) = &out.planned else { continue };
        let Some(v) = p.snapshot.vms.iter().find(|v| v.name == key) else { continue };
        print!("{}", explain_text(&pool.name_any(), v, p));
        return Ok(());
    }
    println!(
        "It is in no pool kubedrs manages: label it (or its namespace) {}=<pool>, or run it on a node a HostPool \
         selects. Observe warnings, if any, are Events on the VMI.",
        keys::POOL
    );
    Ok(())
}

/// What `kubectl drs explain` says about one VM of a planned pool.
pub fn explain_text(pool: &str, v: &kubedrs_engine::Vm, p: &crate::pass::PassSummary) -> String {
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let mut out = format!(
        "Pool {pool}: reservation {}m CPU / {:.1} GiB, demand {}m CPU / {:.1} GiB, automation {:?}{}.\n",
        v.cpu.reservation,
        gib(v.memory.reservation),
        v.demand.cpu_millis,
        gib(v.demand.memory_bytes),
        v.automation,
        if v.live_migratable { "" } else { ", not live-migratable" }
    );
    let now = plan_cli::verdicts(p);
    if let Some(m) = p.plan.moves.iter().find(|m| m.vm == v.name) {
        out.push_str(&format!("Planned: move {} -> {} ({}): {}.\n", m.from, m.to, m.reason.as_str(), m.why));
        if let Some(n) = now.get(&v.name) {
            out.push_str(&format!("Now: {n}.\n"));
        }
    } else if let Some(b) = p.plan.blocked.iter().find(|b| b.vm == v.name) {
        out.push_str(&format!("Blocked ({}): {}.\n", crate::actuate::blocked_word(&b.reason), b.why));
    } else if p.snapshot.in_flight.iter().any(|m| m.vm == v.name) {
        out.push_str("Migrating now: kubedrs waits for this migration to finish.\n");
    } else {
        let why = if p.plan.balance_summary.is_empty() {
            "no move of it improves the pool".to_string()
        } else {
            p.plan.balance_summary.clone()
        };
        out.push_str(&format!("Stays where it is: {why}.\n"));
    }
    for r in p.plan.rule_notes.iter().filter(|r| r.vms.contains(&v.name)) {
        out.push_str(&format!("Rule {}: {}.\n", r.rule, r.why));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use crate::observe::DemandWindow;
    use clap::Parser;

    #[test]
    fn the_plugin_reads_kubectl_style_arguments() {
        let a = KubectlDrs::try_parse_from(["kubectl-drs", "maintenance", "enter", "n1", "--wait"]).unwrap();
        assert!(
            matches!(a.command, DrsCommand::Maintenance { action: MaintenanceAction::Enter { ref node, wait: true, .. } } if node == "n1")
        );
        let a = KubectlDrs::try_parse_from(["kubectl-drs", "explain", "web-1", "-n", "shop"]).unwrap();
        assert!(
            matches!(a.command, DrsCommand::Explain { ref vm, ref namespace } if vm == "web-1" && namespace == "shop")
        );
        assert!(KubectlDrs::try_parse_from(["kubectl-drs", "maintenance", "pause", "n1"]).is_err());
    }

    #[test]
    fn explain_says_why_a_vm_moves_and_when() {
        let cluster = one_vm_leaving_n1();
        let out = plan_cli::dry_run(&cluster.pools[0], &cluster, &DemandWindow::default(), 1000).unwrap();
        let p = out.planned.unwrap();
        let text = explain_text("prod", &p.snapshot.vms[0], &p);
        assert!(text.contains("Planned: move n1 -> n2 (maintenance): node n1 is in maintenance"), "{text}");
        assert!(text.contains("Now: recommend: dry run"), "{text}");
    }

    #[test]
    fn status_shows_readiness_and_what_is_blocked() {
        let mut p = pool("prod").selects(keys::POOL, "prod").build();
        let mut st = crate::crd::HostPoolStatus { nodes: 3, vms: 7, imbalance: Some(0.12), ..Default::default() };
        st.blocked.push(crate::crd::BlockedVm {
            vm: "shop/db".into(),
            node: Some("n1".into()),
            reason: "Rule".into(),
            message: "required rule db-on-ssd leaves no node".into(),
            ..Default::default()
        });
        p.status = Some(st);
        let text = status_text(&[p]);
        assert!(text.starts_with("POOL"), "{text}");
        assert!(text.contains("prod"), "{text}");
        assert!(text.contains("blocked shop/db: required rule db-on-ssd leaves no node"), "{text}");
    }
}
