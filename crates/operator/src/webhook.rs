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
//! The webhook never refuses a VMI: anything it cannot decide (an unknown pool, a body it cannot read) is
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

use crate::keys;
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance};
use kubedrs_engine::Labels;

/// Path the chart registers.
pub const PATH: &str = "/mutate-virtualmachineinstances";

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

/// The router (also used by tests without TLS).
pub fn router(state: WebhookState) -> Router {
    Router::new().route(PATH, post(handle)).with_state(state)
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
        let state = WebhookState { baselines: Baselines::default(), vms: None, namespaces: None };
        let r = review(&req, &state);
        assert!(r.allowed && r.patch.is_none());
        state.baselines.set("prod", Some("Haswell-noTSX".into()));
        let r = review(&req, &state);
        assert!(r.allowed && r.patch.is_some());
    }
}
