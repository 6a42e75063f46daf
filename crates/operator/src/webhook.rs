//! The CPU-baseline admission webhook (the EVC of kubedrs): a mutating webhook on VirtualMachineInstance
//! CREATE.
//!
//! Outside the per-pool pipeline, fed by it: each pass publishes its pool's resolved baseline
//! ([`Baselines`]); when a VMI of that pool is created without a CPU model (or with `host-model`), the
//! webhook sets `spec.domain.cpu.model` to the baseline and annotates the VMI
//! `kubedrs.io/cpu-baseline: <model>`, so the VM can live-migrate to every node of the pool. VMIs that
//! name a model (or `host-passthrough`) keep it. Pools with `cpuBaseline: Off`, or without a resolved
//! baseline, are left alone.
//!
//! A second, validating webhook on HostPool CREATE and UPDATE ([`overlap`], path [`VALIDATE_PATH`]) refuses
//! a pool whose node selector would claim a node another pool already selects (a node belongs to one pool).
//! It is registered with `failurePolicy: Ignore` too: with kubedrs down the pool is accepted, and the
//! overlap is then reported on the pools (`Degraded`, `NodesClaimedByTwoPools`) and the nodes
//! (`ClaimedByTwoPools` Events), as it is when labels change later.
//!
//! The mutating webhook never refuses a VMI: anything it cannot decide (an unknown pool, a body it cannot read) is
//! allowed unchanged, and the chart registers it with `failurePolicy: Ignore`, so kubedrs being down never
//! stops VMs from starting. [`mutate`] is the pure decision; [`serve`] is the HTTPS server (rustls, the
//! certificate re-read every minute so a rotated Secret is picked up).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::reflector::Store;

use k8s_openapi::api::core::v1::Node;

use crate::crd::HostPool;
use crate::keys;
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance};
use kubedrs_engine::Labels;

/// Path the chart registers.
pub const PATH: &str = "/mutate-virtualmachineinstances";
/// Path of the validating webhook on HostPools.
pub const VALIDATE_PATH: &str = "/validate-hostpools";

/// The resolved baseline model of each pool whose `cpuBaseline` is not `Off`, updated by every pass.
#[derive(Debug, Clone, Default)]
pub struct Baselines(Arc<RwLock<BTreeMap<String, String>>>);

impl Baselines {
    /// Records the pool's baseline after a pass (`None`: no baseline, or `Off`).
    pub fn set(&self, pool: &str, model: Option<String>) {
        if let Ok(mut m) = self.0.write() {
            match model {
                Some(model) => m.insert(pool.to_string(), model),
                None => m.remove(pool),
            };
        }
    }

    pub fn get(&self, pool: &str) -> Option<String> {
        self.0.read().ok()?.get(pool).cloned()
    }
}

/// The pool a new VMI belongs to, as api.md orders it: the VM's (or the VMI's) `kubedrs.io/pool` label,
/// else its namespace's. (The third rule, the node's pool, does not apply to a VMI not yet scheduled.)
pub fn pool_of_new_vmi(
    vmi: &VirtualMachineInstance,
    vm_labels: Option<&Labels>,
    ns_labels: Option<&Labels>,
) -> Option<String> {
    vm_labels
        .and_then(|l| l.get(keys::POOL))
        .or_else(|| vmi.metadata.labels.as_ref().and_then(|l| l.get(keys::POOL)))
        .or_else(|| ns_labels.and_then(|l| l.get(keys::POOL)))
        .cloned()
}

/// The JSON patch that gives `vmi` the pool's `baseline`, or `None` when it keeps its model.
pub fn mutate(vmi: &VirtualMachineInstance, baseline: Option<&str>) -> Option<json_patch::Patch> {
    let baseline = baseline?;
    let cpu = vmi.spec.domain.cpu.as_ref();
    match cpu.and_then(|c| c.model.as_deref()) {
        None | Some("") | Some("host-model") => {}
        Some(_) => return None,
    }
    let mut ops = Vec::new();
    if cpu.is_some() {
        ops.push(serde_json::json!({"op": "add", "path": "/spec/domain/cpu/model", "value": baseline}));
    } else {
        ops.push(serde_json::json!({"op": "add", "path": "/spec/domain/cpu", "value": {"model": baseline}}));
    }
    if vmi.metadata.annotations.is_some() {
        let key = keys::CPU_BASELINE.replace('~', "~0").replace('/', "~1");
        ops.push(serde_json::json!({"op": "add", "path": format!("/metadata/annotations/{key}"), "value": baseline}));
    } else {
        ops.push(
            serde_json::json!({"op": "add", "path": "/metadata/annotations", "value": {keys::CPU_BASELINE: baseline}}),
        );
    }
    serde_json::from_value(serde_json::Value::Array(ops)).ok()
}

/// What the webhook reads besides the request: the baselines and the stores for pool membership.
#[derive(Clone)]
pub struct WebhookState {
    pub baselines: Baselines,
    pub vms: Option<Store<VirtualMachine>>,
    pub namespaces: Option<Store<k8s_openapi::api::core::v1::Namespace>>,
    /// For the HostPool overlap check.
    pub pools: Option<Store<HostPool>>,
    pub nodes: Option<Store<Node>>,
}

/// Why `pool` may not be admitted: the nodes it would claim that another pool (not itself) already
/// selects, or `None`. Pools whose spec is invalid select nothing (kubedrs does not use them).
pub fn overlap(pool: &HostPool, others: &[Arc<HostPool>], nodes: &[Arc<Node>]) -> Option<String> {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let mine = pool.spec.validate(&name).ok()?;
    let mut clashes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for other in others {
        let other_name = other.metadata.name.clone().unwrap_or_default();
        if other_name == name {
            continue;
        }
        let Ok(theirs) = other.spec.validate(&other_name) else { continue };
        let shared: Vec<String> = nodes
            .iter()
            .filter(|n| {
                let labels = n.metadata.labels.clone().unwrap_or_default();
                mine.node_selector.matches(&labels) && theirs.node_selector.matches(&labels)
            })
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        if !shared.is_empty() {
            clashes.insert(other_name, shared);
        }
    }
    if clashes.is_empty() {
        return None;
    }
    let list: Vec<String> = clashes
        .iter()
        .map(|(p, ns)| {
            let shown: Vec<&str> = ns.iter().take(5).map(String::as_str).collect();
            let more = if ns.len() > 5 { format!(" and {} more", ns.len() - 5) } else { String::new() };
            format!("{} (HostPool {p}){more}", shown.join(", "))
        })
        .collect();
    Some(format!(
        "spec.nodeSelector: HostPool {name} would claim node(s) another HostPool already selects: {}; a node \
         belongs to one pool (narrow one of the selectors)",
        list.join("; ")
    ))
}

/// The response to one HostPool admission request: refused when it would overlap another pool.
pub fn review_pool(req: &AdmissionRequest<DynamicObject>, state: &WebhookState) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return resp;
    }
    let (Some(obj), Some(pools), Some(nodes)) = (req.object.as_ref(), &state.pools, &state.nodes) else {
        return resp;
    };
    // A body kubedrs cannot read is the schema's business: allowed.
    let Ok(pool) = serde_json::to_value(obj).and_then(serde_json::from_value::<HostPool>) else { return resp };
    let (pools, nodes) = (pools.state(), nodes.state());
    // An update of a pool that already overlapped (labels changed since) is not refused for it: the
    // overlap is reported on the pools, and the update may be the fix.
    let overlapped_before = req
        .old_object
        .as_ref()
        .and_then(|o| serde_json::to_value(o).and_then(serde_json::from_value::<HostPool>).ok())
        .is_some_and(|old| overlap(&old, &pools, &nodes).is_some());
    match overlap(&pool, &pools, &nodes) {
        Some(_) if overlapped_before => resp,
        None => resp,
        Some(why) => {
            tracing::info!(pool = ?pool.metadata.name, %why, "webhook: HostPool refused");
            resp.deny(why)
        }
    }
}

/// The response to one admission request: always allowed, with a patch when a baseline applies.
pub fn review(req: &AdmissionRequest<DynamicObject>, state: &WebhookState) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    if req.operation != Operation::Create {
        return resp;
    }
    let Some(obj) = req.object.as_ref() else { return resp };
    let vmi: VirtualMachineInstance = match serde_json::to_value(obj).and_then(serde_json::from_value) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "webhook: cannot read the VirtualMachineInstance; allowed unchanged");
            return resp;
        }
    };
    let ns = req.namespace.clone().or_else(|| vmi.metadata.namespace.clone()).unwrap_or_default();
    let vm_labels = state.vms.as_ref().and_then(|s| {
        let owner = vmi.metadata.owner_references.as_ref()?.iter().find(|o| o.kind == "VirtualMachine")?;
        let vm = s.get(&kube::runtime::reflector::ObjectRef::new(&owner.name).within(&ns))?;
        vm.metadata.labels.clone()
    });
    let ns_labels = state
        .namespaces
        .as_ref()
        .and_then(|s| s.get(&kube::runtime::reflector::ObjectRef::new(&ns))?.metadata.labels.clone());
    let Some(pool) = pool_of_new_vmi(&vmi, vm_labels.as_ref(), ns_labels.as_ref()) else { return resp };
    let baseline = state.baselines.get(&pool);
    let Some(patch) = mutate(&vmi, baseline.as_deref()) else { return resp };
    let name = vmi.metadata.name.clone().or(vmi.metadata.generate_name.clone()).unwrap_or_default();
    match resp.with_patch(patch) {
        Ok(r) => {
            tracing::info!(vmi = %format!("{ns}/{name}"), %pool, model = ?baseline, "webhook: CPU baseline set");
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook: cannot serialize the patch; allowed unchanged");
            AdmissionResponse::from(req)
        }
    }
}

async fn handle(
    State(state): State<WebhookState>,
    Json(body): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req: Result<AdmissionRequest<DynamicObject>, _> = body.try_into();
    let resp = match req {
        Ok(req) => review(&req, &state),
        Err(e) => {
            tracing::warn!(error = %e, "webhook: malformed AdmissionReview");
            AdmissionResponse::invalid(e.to_string())
        }
    };
    Json(resp.into_review())
}

async fn handle_pool(
    State(state): State<WebhookState>,
    Json(body): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req: Result<AdmissionRequest<DynamicObject>, _> = body.try_into();
    let resp = match req {
        Ok(req) => review_pool(&req, &state),
        Err(e) => {
            tracing::warn!(error = %e, "webhook: malformed AdmissionReview");
            AdmissionResponse::invalid(e.to_string())
        }
    };
    Json(resp.into_review())
}

/// The router (also used by tests without TLS).
pub fn router(state: WebhookState) -> Router {
    Router::new().route(PATH, post(handle)).route(VALIDATE_PATH, post(handle_pool)).with_state(state)
}

/// Serves the webhook over HTTPS until the process ends, re-reading the certificate every minute.
pub async fn serve(addr: SocketAddr, cert: PathBuf, key: PathBuf, state: WebhookState) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
        .await
        .with_context(|| format!("reading the webhook certificate {} and key {}", cert.display(), key.display()))?;
    let reload = config.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = reload.reload_from_pem_file(&cert, &key).await {
                tracing::warn!(error = %e, "webhook: cannot re-read the certificate; keeping the old one");
            }
        }
    });
    tracing::info!(%addr, path = PATH, "webhook listening (HTTPS)");
    axum_server::bind_rustls(addr, config).serve(router(state).into_make_service()).await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fixtures::vmi;

    fn apply(v: &VirtualMachineInstance, p: &json_patch::Patch) -> VirtualMachineInstance {
        let mut doc = serde_json::to_value(v).unwrap();
        json_patch::patch(&mut doc, p).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn a_vmi_without_a_model_gets_the_baseline_and_the_annotation() {
        let v = vmi("shop/web-1").pending().build();
        let out = apply(&v, &mutate(&v, Some("Haswell-noTSX")).unwrap());
        assert_eq!(out.spec.domain.cpu.unwrap().model.as_deref(), Some("Haswell-noTSX"));
        assert_eq!(out.metadata.annotations.unwrap()[keys::CPU_BASELINE], "Haswell-noTSX");
    }

    #[test]
    fn host_model_is_replaced_named_models_and_passthrough_are_kept() {
        let hm = vmi("shop/a").model("host-model").annotation("x", "y").build();
        let out = apply(&hm, &mutate(&hm, Some("Skylake-Client")).unwrap());
        assert_eq!(out.spec.domain.cpu.unwrap().model.as_deref(), Some("Skylake-Client"));
        let ann = out.metadata.annotations.unwrap();
        assert_eq!((ann["x"].as_str(), ann[keys::CPU_BASELINE].as_str()), ("y", "Skylake-Client"));
        assert!(mutate(&vmi("shop/b").model("host-passthrough").build(), Some("Skylake-Client")).is_none());
        assert!(mutate(&vmi("shop/c").model("Haswell").build(), Some("Skylake-Client")).is_none());
        assert!(mutate(&vmi("shop/d").build(), None).is_none(), "no baseline, no change");
    }

    #[test]
    fn pool_membership_follows_the_vm_then_the_namespace() {
        let v = vmi("shop/a").build();
        let vm: Labels = [(keys::POOL.to_string(), "gold".to_string())].into();
        let ns: Labels = [(keys::POOL.to_string(), "silver".to_string())].into();
        assert_eq!(pool_of_new_vmi(&v, Some(&vm), Some(&ns)).as_deref(), Some("gold"));
        assert_eq!(pool_of_new_vmi(&v, None, Some(&ns)).as_deref(), Some("silver"));
        assert_eq!(pool_of_new_vmi(&v, None, None), None);
    }

    #[test]
    fn a_review_is_always_allowed_and_patched_for_pool_members() {
        let v = vmi("shop/a").label(keys::POOL, "prod").pending().build();
        let body: AdmissionReview<DynamicObject> = serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "123", "operation": "CREATE", "namespace": "shop", "name": "a",
                "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachineInstance"},
                "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachineinstances"},
                "userInfo": {"username": "u"},
                "object": serde_json::to_value(&v).unwrap()
            }
        }))
        .unwrap();
        let req: AdmissionRequest<DynamicObject> = body.try_into().unwrap();
        let state =
            WebhookState { baselines: Baselines::default(), vms: None, namespaces: None, pools: None, nodes: None };
        let r = review(&req, &state);
        assert!(r.allowed && r.patch.is_none());
        state.baselines.set("prod", Some("Haswell-noTSX".into()));
        let r = review(&req, &state);
        assert!(r.allowed && r.patch.is_some());
    }

    fn pool_review(op: &str, new: &HostPool, old: Option<&HostPool>, state: &WebhookState) -> AdmissionResponse {
        let mut req = serde_json::json!({
            "uid": "1", "operation": op, "name": new.metadata.name,
            "kind": {"group": "kubedrs.io", "version": "v1alpha1", "kind": "HostPool"},
            "resource": {"group": "kubedrs.io", "version": "v1alpha1", "resource": "hostpools"},
            "userInfo": {"username": "u"},
            "object": serde_json::to_value(new).unwrap(),
        });
        if let Some(old) = old {
            req["oldObject"] = serde_json::to_value(old).unwrap();
        }
        let body: AdmissionReview<DynamicObject> = serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req
        }))
        .unwrap();
        review_pool(&body.try_into().unwrap(), state)
    }

    #[test]
    fn a_pool_claiming_a_node_another_pool_selects_is_refused_naming_both() {
        use crate::fixtures::{node, pool};
        use kube::runtime::{reflector, watcher::Event};
        let (pools, mut pw) = reflector::store::<HostPool>();
        let (nodes, mut nw) = reflector::store::<Node>();
        for n in [node("n1").in_pool("prod").build(), node("n2").label("disk", "ssd").build()] {
            nw.apply_watcher_event(&Event::Apply(n));
        }
        let prod = pool("prod").selects(keys::POOL, "prod").build();
        pw.apply_watcher_event(&Event::Apply(prod.clone()));
        let state = WebhookState {
            baselines: Baselines::default(),
            vms: None,
            namespaces: None,
            pools: Some(pools),
            nodes: Some(nodes),
        };
        // An empty selector matches every node, n1 included.
        let everything = pool("all").build();
        let r = pool_review("CREATE", &everything, None, &state);
        assert!(!r.allowed);
        assert!(r.result.message.contains("spec.nodeSelector"), "{}", r.result.message);
        assert!(r.result.message.contains("n1 (HostPool prod)"), "{}", r.result.message);
        // A selector of its own nodes is fine; so is the pool itself being updated.
        assert!(pool_review("CREATE", &pool("ssd").selects("disk", "ssd").build(), None, &state).allowed);
        assert!(pool_review("UPDATE", &prod, Some(&prod), &state).allowed);
        // An update that brings an overlap in is refused; one of a pool that already overlapped is not.
        let narrow = pool("all").selects("disk", "ssd").build();
        assert!(!pool_review("UPDATE", &everything, Some(&narrow), &state).allowed);
        assert!(pool_review("UPDATE", &everything, Some(&everything), &state).allowed);
        // Without the caches (no store yet) everything is allowed.
        let blind =
            WebhookState { baselines: Baselines::default(), vms: None, namespaces: None, pools: None, nodes: None };
        assert!(pool_review("CREATE", &everything, None, &blind).allowed);
    }
}
