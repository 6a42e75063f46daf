//! kubedrs end to end: the operator binary and the KubeVirt emulator as child processes against the local
//! control plane of `e2e/cluster up` (real kube-apiserver, kube-scheduler, controller-manager, KWOK nodes,
//! metrics-server). Run by `e2e/test`; alone:
//!
//! ```sh
//! e2e/cluster up --nodes 6 && cargo build --bin kubedrs
//! cargo test -p kubedrs-e2e --test e2e -- --test-threads=1 --nocapture
//! ```
//!
//! Every scenario polls with a timeout (`eventually`), never sleeps to synchronize, and resets the cluster
//! before and after itself. `docs/e2e.md` says what each one proves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use kubedrs_e2e::harness::*;
use kubedrs_e2e::kubevirt::str_at;
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);

fn nodes(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("kwok-node-{i}")).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Emulator flags of the suite: 4 GiB/s (a 4 GiB guest migrates in ~1 s of copy), 100 ms between phases.
const EMULATOR: &[&str] = &["--migration-rate", "4096", "--phase-step-ms", "100"];

/// The pods kubedrs reported placing: its `Placed` Events (a Binding leaves no trace of its author on the
/// pod; kube-scheduler never touches pods with another `schedulerName`).
async fn placed_by_kubedrs(s: &Scenario) -> anyhow::Result<BTreeSet<String>> {
    let events: kube::Api<k8s_openapi::api::core::v1::Event> = kube::Api::namespaced(s.client.clone(), &s.ns);
    Ok(events
        .list(&ListParams::default().fields("reason=Placed"))
        .await?
        .items
        .iter()
        .filter(|e| e.reporting_component.as_deref() == Some("kubedrs"))
        .filter_map(|e| e.involved_object.name.clone())
        .collect())
}

/// (a) Initial placement: 30 VMs with `schedulerName: kubedrs` over 6 nodes end up balanced, every
/// launcher pod bound by kubedrs (kube-scheduler ignores them), and the pool's status counts them.
#[tokio::test]
async fn a_placement_of_30_vms_is_balanced() -> anyhow::Result<()> {
    let all = nodes(0..6);
    let mut s = Scenario::start("placement", &refs(&all)).await?;
    let r = placement(&mut s, &all).await;
    s.conclude(r).await
}

async fn placement(s: &mut Scenario, all: &[String]) -> anyhow::Result<()> {
    {
        s.start_emulator(EMULATOR)?;
        s.start_operator("0", &[])?;
        let s = &*s;
        s.create_pool(json!({})).await?;
        for i in 0..30 {
            s.create_vm(&vm(&format!("vm-{i:02}")).cpus(2).memory("4Gi").placed_by_kubedrs()).await?;
        }
        let placement = s.all_running(30, 2 * MIN).await?;
        let counts = per_node(&placement, all);
        show("VMs per node", &counts);
        let (max, min) = (counts.values().max().copied().unwrap_or(0), counts.values().min().copied().unwrap_or(0));
        ensure!(max - min <= 2, "placement is unbalanced: {counts:?}");
        let pods = s.pods().list(&ListParams::default().labels("kubevirt.io=virt-launcher")).await?;
        ensure!(pods.items.len() == 30, "{} launcher pods, expected 30", pods.items.len());
        let placed = placed_by_kubedrs(s).await?;
        let not_ours: Vec<String> = pods
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()) != Some("kubedrs") || !placed.contains(&p.name_any()))
            .map(|p| p.name_any())
            .collect();
        ensure!(not_ours.is_empty(), "pods not placed by kubedrs: {not_ours:?}");
        eventually("pool status counts 6 nodes and 30 VMs", MIN, move || async move {
            let st = s.pool_status().await?;
            Ok(if st["nodes"] == 6 && st["vms"] == 30 {
                Ok(())
            } else {
                Err(format!("nodes={} vms={}", st["nodes"], st["vms"]))
            })
        })
        .await?;
        Ok(())
    }
}

/// (c) Maintenance: the annotation empties the node (state `InMaintenance`, cordoned by kubedrs), no VM is
/// lost; removing it clears the state, uncordons the node, and balancing brings VMs back.
#[tokio::test]
async fn c_maintenance_on_and_off() -> anyhow::Result<()> {
    let pool_nodes = nodes(0..4);
    let mut s = Scenario::start("maintenance", &refs(&pool_nodes)).await?;
    let r = maintenance(&mut s, &pool_nodes).await;
    s.conclude(r).await
}

async fn maintenance(s: &mut Scenario, pool_nodes: &[String]) -> anyhow::Result<()> {
    {
        s.start_emulator(EMULATOR)?;
        s.start_operator("0", &[])?;
        let s = &*s;
        s.create_pool(json!({"migrationThreshold": 3})).await?;
        for i in 0..12 {
            s.create_vm(&vm(&format!("vm-{i:02}")).cpus(2).memory("16Gi").placed_by_kubedrs()).await?;
        }
        let before = s.all_running(12, 2 * MIN).await?;
        let counts = per_node(&before, pool_nodes);
        show("before", &counts);
        let target = counts.iter().max_by_key(|(n, c)| (**c, std::cmp::Reverse((*n).clone()))).map(|(n, _)| n.clone()).context("no node")?;
        let on_target: BTreeSet<String> = before.iter().filter(|(_, n)| **n == target).map(|(v, _)| v.clone()).collect();
        ensure!(!on_target.is_empty(), "no VM on {target}");
        eprintln!("  maintenance on {target} ({} VMs)", on_target.len());
        s.annotate_node(&target, MAINTENANCE, Some("true")).await?;

        let tgt = target.clone();
        eventually(&format!("{target} empty and InMaintenance"), 2 * MIN, move || {
            let tgt = tgt.clone();
            async move {
                let node = s.node(&tgt).await?;
                let ann = node.annotations();
                let state = ann.get(MAINTENANCE_STATE).cloned().unwrap_or_default();
                let placement = s.placement().await?;
                let left = placement.values().filter(|n| **n == tgt).count();
                Ok(if state == "InMaintenance" && left == 0 {
                    Ok(())
                } else {
                    Err(format!("state={state:?} message={:?} VMs left={left}", ann.get(MAINTENANCE_MESSAGE)))
                })
            }
        })
        .await?;
        let node = s.node(&target).await?;
        ensure!(node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true), "{target} is not cordoned");
        ensure!(
            node.annotations().get(MAINTENANCE_CORDONED).map(String::as_str) == Some("true"),
            "{target} lacks {MAINTENANCE_CORDONED}"
        );
        let after = s.all_running(12, MIN).await?;
        ensure!(after.len() == 12, "VMs lost: {} running", after.len());
        let migs = s.migrations_settled(MIN).await?;
        let moved: BTreeSet<String> = migs
            .iter()
            .filter(|m| m["metadata"]["labels"]["kubedrs.io/reason"] == "maintenance")
            .filter(|m| str_at(m, &["status", "phase"]) == Some("Succeeded"))
            .filter_map(|m| str_at(m, &["spec", "vmiName"]).map(str::to_string))
            .collect();
        ensure!(moved == on_target, "maintenance migrations moved {moved:?}, expected {on_target:?}");
        for m in &migs {
            ensure!(
                m["metadata"]["annotations"]["kubedrs.io/source-node"] == target.as_str()
                    && m["metadata"]["annotations"]["kubedrs.io/target-node"] == m["spec"]["addedNodeSelector"]["kubernetes.io/hostname"]
                    && m["metadata"]["annotations"]["kubedrs.io/why"].as_str().is_some_and(|w| !w.is_empty()),
                "migration without the expected annotations: {}",
                m["metadata"]
            );
        }

        eprintln!("  maintenance off {target}");
        s.annotate_node(&target, MAINTENANCE, None).await?;
        let tgt = target.clone();
        eventually(&format!("{target} out of maintenance and uncordoned"), MIN, move || {
            let tgt = tgt.clone();
            async move {
                let node = s.node(&tgt).await?;
                let ann = node.annotations();
                let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
                let kubedrs_keys: Vec<&String> = ann.keys().filter(|k| k.starts_with("kubedrs.io/")).collect();
                Ok(if !cordoned && kubedrs_keys.is_empty() {
                    Ok(())
                } else {
                    Err(format!("cordoned={cordoned} annotations={kubedrs_keys:?}"))
                })
            }
        })
        .await?;
        let tgt = target.clone();
        eventually(&format!("VMs flow back to {target}"), 2 * MIN, move || {
            let tgt = tgt.clone();
            async move {
                let n = s.placement().await?.values().filter(|n| **n == tgt).count();
                Ok(if n > 0 { Ok(()) } else { Err("still empty".to_string()) })
            }
        })
        .await?;
        let end = s.all_running(12, MIN).await?;
        show("after", &per_node(&end, pool_nodes));
        Ok(())
    }
}

#[allow(dead_code)]
fn unused(_: BTreeMap<String, Value>, _: Patch<()>, _: PatchParams) {}
