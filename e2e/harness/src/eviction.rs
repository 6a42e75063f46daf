//! KubeVirt's eviction handling, emulated: virt-api's `pods/eviction` validating webhook and virt-controller's
//! evacuation controller.
//!
//! - **Webhook** ([`admit`], [`serve`]): KubeVirt v1.6's `PodEvictionAdmitter`. An eviction of a running
//!   virt-launcher pod whose VMI should live-migrate on eviction (`spec.evictionStrategy`, else the cluster's:
//!   `LiveMigrate`, `LiveMigrateIfPossible` when migratable, `External`) marks the VMI
//!   `status.evacuationNodeName = <pod's node>` and is **denied with 429** `Eviction triggered evacuation of
//!   VMI "<ns>/<name>"` (the text the descheduler and `kubectl drain` users look for); later evictions get
//!   `Evacuation in progress: ...`, also 429. `LiveMigrate` on a VMI that cannot migrate is denied without a
//!   mark; `None`, no strategy, or `LiveMigrateIfPossible` on a non-migratable VMI let the eviction through
//!   (the pod is deleted and the VMI fails, as in KubeVirt). A dry-run eviction marks with a dry-run patch.
//! - **Registration** ([`register`]): a `ValidatingWebhookConfiguration` like virt-operator's
//!   `virt-api-validator` entry `virt-launcher-eviction-interceptor.kubevirt.io` (all operations on
//!   `pods/eviction`, `failurePolicy: Ignore`, `sideEffects: NoneOnDryRun`, 10 s timeout, no selector), but
//!   with `url: https://127.0.0.1:<port>/launcher-eviction-validate` and the `caBundle` of a CA made at start
//!   ([`WebhookCert`]), since the API server runs on this host and there is no Service to route through.
//! - **Evacuation** ([`evacuation_candidates`]): virt-controller's evacuation controller. For each node, the
//!   marked VMIs still on it, not migrating, migratable on eviction, with no unfinished migration and one
//!   active pod, get a `VirtualMachineInstanceMigration` (`generateName: kubevirt-evacuation-`, annotation
//!   `kubevirt.io/evacuationMigration: <node>`), as many as `min(parallelMigrationsPerCluster - running,
//!   parallelOutboundMigrationsPerNode - running from this node)` allows; `running` counts migrations past
//!   `Pending`, so (as in KubeVirt) Pending ones wait in the migration controller's queue. The mark is cleared
//!   when the migration hands the VMI over to its target (the emulator's migration controller).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::kubevirt::{self as kv, at, str_at};

/// Path virt-api serves the admitter on (`LauncherEvictionValidatePath`).
pub const PATH: &str = "/launcher-eviction-validate";
/// virt-operator's name for virt-api's validating webhook configuration.
pub const CONFIG_NAME: &str = "virt-api-validator";
/// The webhook's name in it (it shows in the API server's denial: `admission webhook "<name>" denied ...`).
pub const WEBHOOK_NAME: &str = "virt-launcher-eviction-interceptor.kubevirt.io";
/// Annotation on a launcher pod: its VMI's name (`virtv1.DomainAnnotation`).
pub const DOMAIN_ANNOTATION: &str = "kubevirt.io/domain";
/// Annotation on an evacuation migration: the node being evacuated.
pub const EVACUATION_ANNOTATION: &str = "kubevirt.io/evacuationMigration";
pub const EVACUATION_PREFIX: &str = "kubevirt-evacuation-";

/// What the admitter answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// HTTP 429 with this message.
    Deny(String),
    /// Mark the VMI (`status.evacuationNodeName = node`), then deny with 429 and `message` (or, when the mark
    /// fails, deny with "kubevirt failed marking the vmi for eviction: <error>").
    MarkAndDeny {
        node: String,
        message: String,
    },
}

/// The VMI's eviction strategy: its own, else the cluster-wide one (`KubeVirt.spec.configuration`).
pub fn eviction_strategy<'a>(vmi: &'a Value, cluster: Option<&'a str>) -> Option<&'a str> {
    str_at(vmi, &["spec", "evictionStrategy"]).or(cluster)
}

/// KubeVirt's `vmi.IsMigratable()`: the `LiveMigratable` condition is `True`.
pub fn is_migratable(vmi: &Value) -> bool {
    at(vmi, &["status", "conditions"])
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "LiveMigratable" && c["status"] == "True"))
}

/// KubeVirt's `VMIMigratableOnEviction`: what the evacuation controller migrates (not `External`: that one
/// is left to whoever watches the mark).
pub fn migratable_on_eviction(vmi: &Value, cluster: Option<&str>) -> bool {
    match eviction_strategy(vmi, cluster) {
        Some("LiveMigrate") => true,
        Some("LiveMigrateIfPossible") => is_migratable(vmi),
        _ => false,
    }
}

/// The VMI name the admitter must look at for an evicted pod, or `None` when the eviction passes without
/// looking (not a virt-launcher pod, a completed one, or one without the domain annotation).
pub fn launcher_vmi_name(pod: &Value) -> Option<&str> {
    if kv::labels(pod).get(kv::APP_LABEL).map(String::as_str) != Some("virt-launcher") {
        return None;
    }
    if matches!(str_at(pod, &["status", "phase"]), Some("Succeeded" | "Failed")) {
        return None;
    }
    str_at(pod, &["metadata", "annotations", DOMAIN_ANNOTATION])
}

/// The admitter's decision for evicting `pod` (a virt-launcher pod, see [`launcher_vmi_name`]) of `vmi`
/// (or the error fetching it), under the cluster-wide strategy `cluster`.
pub fn admit(pod: &Value, vmi: Result<&Value, String>, cluster: Option<&str>) -> Admission {
    let vmi = match vmi {
        Ok(v) => v,
        Err(e) => return Admission::Deny(format!("kubevirt failed getting the vmi: {e}")),
    };
    let name = str_at(vmi, &["metadata", "name"]).unwrap_or_default();
    let ns = str_at(vmi, &["metadata", "namespace"]).unwrap_or_default();
    let mark = match eviction_strategy(vmi, cluster) {
        Some("LiveMigrate") => {
            if !is_migratable(vmi) {
                return Admission::Deny(format!(
                    "VMI {name} is configured with an eviction strategy but is not live-migratable"
                ));
            }
            true
        }
        Some("LiveMigrateIfPossible") => is_migratable(vmi),
        Some("External") => true,
        _ => false,
    };
    if !mark {
        return Admission::Allow;
    }
    // "This message format is expected from descheduler."
    let triggered = format!("Eviction triggered evacuation of VMI \"{ns}/{name}\"");
    if str_at(vmi, &["status", "evacuationNodeName"]).is_some_and(|n| !n.is_empty()) {
        return Admission::Deny(format!("Evacuation in progress: {triggered}"));
    }
    let pod_node = str_at(pod, &["spec", "nodeName"]).unwrap_or_default();
    if str_at(vmi, &["status", "nodeName"]).unwrap_or_default() != pod_node {
        return Admission::Deny("Eviction request for target Pod".into());
    }
    Admission::MarkAndDeny { node: pod_node.to_string(), message: triggered }
}

/// Is the eviction a dry run (the request's `dryRun`, or `deleteOptions.dryRun: [All]` in the Eviction)?
pub fn is_dry_run(request: &Value) -> bool {
    request["dryRun"].as_bool() == Some(true)
        || at(request, &["object", "deleteOptions", "dryRun"])
            .and_then(Value::as_array)
            .and_then(|d| d.first())
            .is_some_and(|d| d == "All")
}

/// The AdmissionReview answer (`apiVersion` echoes the request's).
pub fn review_response(review: &Value, admission: &Admission) -> Value {
    let api_version = review["apiVersion"].as_str().unwrap_or("admission.k8s.io/v1");
    let uid = at(review, &["request", "uid"]).cloned().unwrap_or(Value::Null);
    let response = match admission {
        Admission::Allow => json!({"uid": uid, "allowed": true}),
        Admission::Deny(m) | Admission::MarkAndDeny { message: m, .. } => {
            json!({"uid": uid, "allowed": false, "status": {"code": 429, "message": m}})
        }
    };
    json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})
}

// ---------------------------------------------------------------------------------------------------------
// Evacuation controller
// ---------------------------------------------------------------------------------------------------------

/// Limits of the evacuation controller (the same knobs as the migration controller's).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub parallel_migrations: usize,
    pub parallel_outbound_per_node: usize,
}

/// KubeVirt's `IsMigrationRunning`: past `Pending`, not finished.
pub fn migration_running(m: &Value) -> bool {
    !matches!(str_at(m, &["status", "phase"]).unwrap_or(""), "" | "Pending" | "Succeeded" | "Failed")
}

fn migration_unfinished(m: &Value) -> bool {
    !matches!(str_at(m, &["status", "phase"]), Some("Succeeded" | "Failed"))
}

/// KubeVirt's `migrations.IsMigrating`: the VMI's migration state has started and not ended.
fn vmi_migrating(vmi: &Value) -> bool {
    at(vmi, &["status", "migrationState"]).is_some_and(|s| {
        s.get("startTimestamp").is_some_and(|t| !t.is_null()) && s.get("endTimestamp").is_none_or(Value::is_null)
    })
}

fn key_of(o: &Value) -> String {
    format!(
        "{}/{}",
        str_at(o, &["metadata", "namespace"]).unwrap_or_default(),
        str_at(o, &["metadata", "name"]).unwrap_or_default()
    )
}

/// The `ns/name` of a migration's VMI.
pub fn migration_vmi_key(m: &Value) -> String {
    format!(
        "{}/{}",
        str_at(m, &["metadata", "namespace"]).unwrap_or_default(),
        str_at(m, &["spec", "vmiName"]).unwrap_or_default()
    )
}

/// The VMIs (`ns/name`, node) the evacuation controller creates a migration for now. `vmis`: every VMI;
/// `vmims`: every migration; `active_pods(vmi)`: how many live launcher pods the VMI has; `pending`: VMIs
/// whose evacuation migration was created but is not in `vmims` yet (they count as having one).
pub fn evacuation_candidates(
    vmis: &[&Value],
    vmims: &[&Value],
    active_pods: impl Fn(&Value) -> usize,
    pending: &std::collections::BTreeSet<String>,
    cluster: Option<&str>,
    limits: Limits,
) -> Vec<(String, String)> {
    use std::collections::{BTreeMap, BTreeSet};
    let unfinished: Vec<&Value> = vmims.iter().copied().filter(|m| migration_unfinished(m)).collect();
    let mut has_migration: BTreeSet<String> = unfinished.iter().map(|m| migration_vmi_key(m)).collect();
    has_migration.extend(pending.iter().cloned());
    let running: Vec<&Value> = unfinished.iter().copied().filter(|m| migration_running(m)).collect();
    let mut by_node: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for v in vmis {
        if let Some(n) = str_at(v, &["status", "nodeName"]).filter(|n| !n.is_empty()) {
            by_node.entry(n).or_default().push(v);
        }
    }
    let mut out = Vec::new();
    for (node, on_node) in by_node {
        let marked = on_node.iter().copied().filter(|v| {
            str_at(v, &["status", "evacuationNodeName"]) == Some(node) // not yet migrated away
                && !vmi_migrating(v)
        });
        let candidates: Vec<&Value> = marked
            .filter(|v| {
                !matches!(str_at(v, &["status", "phase"]), Some("Succeeded" | "Failed"))
                    && at(v, &["metadata", "deletionTimestamp"]).is_none_or(Value::is_null)
                    && migratable_on_eviction(v, cluster)
                    && is_migratable(v)
                    && !has_migration.contains(&key_of(v))
                    && active_pods(v) <= 1
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let here: BTreeSet<String> = on_node.iter().map(|v| key_of(v)).collect();
        let running_here = running.iter().filter(|m| here.contains(&migration_vmi_key(m))).count();
        let free = limits
            .parallel_migrations
            .saturating_sub(running.len())
            .min(limits.parallel_outbound_per_node.saturating_sub(running_here));
        out.extend(candidates.into_iter().take(free).map(|v| (key_of(v), node.to_string())));
    }
    out
}

/// The migration the evacuation controller creates for `vmi_name`, evacuating `node`.
pub fn evacuation_migration(ns: &str, vmi_name: &str, node: &str) -> Value {
    json!({
        "apiVersion": kv::API_VERSION,
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {
            "generateName": EVACUATION_PREFIX,
            "namespace": ns,
            "annotations": {EVACUATION_ANNOTATION: node},
        },
        "spec": {"vmiName": vmi_name},
    })
}

// ---------------------------------------------------------------------------------------------------------
// The HTTPS endpoint and its registration
// ---------------------------------------------------------------------------------------------------------

/// A CA and a serving certificate for 127.0.0.1, made at start (nothing to rotate: a restarted emulator
/// makes new ones and re-registers the `caBundle`).
pub struct WebhookCert {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl WebhookCert {
    pub fn generate() -> anyhow::Result<WebhookCert> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "kubevirt-emulator webhook CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
        leaf.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf.distinguished_name.push(DnType::CommonName, "virt-api (kubevirt-emulator)");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = leaf.signed_by(&key, &Issuer::new(ca, ca_key))?;
        Ok(WebhookCert { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// The `ValidatingWebhookConfiguration` of the emulated virt-api.
pub fn webhook_configuration(name: &str, url: &str, ca_pem: &str) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                [
                    ("kubevirt.io".to_string(), CONFIG_NAME.to_string()),
                    ("app.kubernetes.io/managed-by".into(), "kubevirt-emulator".into()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: WEBHOOK_NAME.into(),
            admission_review_versions: vec!["v1".into(), "v1beta1".into()],
            // KubeVirt: "We don't want to block evictions in the cluster in a case where this webhook is down."
            failure_policy: Some("Ignore".into()),
            timeout_seconds: Some(10),
            side_effects: "NoneOnDryRun".into(),
            rules: Some(vec![RuleWithOperations {
                operations: Some(vec!["*".into()]),
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".into()]),
                resources: Some(vec!["pods/eviction".into()]),
                scope: None,
            }]),
            client_config: WebhookClientConfig {
                url: Some(url.to_string()),
                ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
                service: None,
            },
            ..ValidatingWebhook::default()
        }]),
    }
}

/// Creates or replaces (server-side apply, forced) the emulator's webhook configuration.
pub async fn register(client: &Client, name: &str, url: &str, ca_pem: &str) -> anyhow::Result<()> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let cfg = webhook_configuration(name, url, ca_pem);
    api.patch(name, &PatchParams::apply("kubevirt-emulator").force(), &Patch::Apply(&cfg)).await?;
    Ok(())
}

/// Removes the webhook configuration (on a clean exit; a killed emulator's is replaced by the next one, and
/// meanwhile `failurePolicy: Ignore` lets evictions through, as a down virt-api would).
pub async fn unregister(client: &Client, name: &str) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(error = %e, "cannot delete the webhook configuration"),
    }
}

#[derive(Clone)]
struct WebhookState {
    client: Client,
    cluster_strategy: Option<String>,
}

/// Binds `127.0.0.1:<port>` (0: any free port), registers the webhook under `config_name` and serves it
/// until the process ends. Returns the bound address once registered.
pub async fn serve(
    client: Client,
    port: u16,
    config_name: &str,
    cluster_strategy: Option<String>,
) -> anyhow::Result<SocketAddr> {
    let cert = WebhookCert::generate()?;
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let tls =
        axum_server::tls_rustls::RustlsConfig::from_pem(cert.cert_pem.into_bytes(), cert.key_pem.into_bytes()).await?;
    let state = Arc::new(WebhookState { client: client.clone(), cluster_strategy });
    let app = Router::new().route(PATH, post(review)).with_state(state);
    let server = axum_server::from_tcp_rustls(listener, tls)?;
    tokio::spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!(error = %e, "eviction webhook server stopped");
        }
    });
    let url = format!("https://{addr}{PATH}");
    register(&client, config_name, &url, &cert.ca_pem).await?;
    tracing::info!(%url, config = config_name, "eviction webhook registered");
    Ok(addr)
}

async fn review(State(st): State<Arc<WebhookState>>, Json(body): Json<Value>) -> Json<Value> {
    let admission = decide(&st, &body["request"]).await;
    tracing::info!(pod = %format!("{}/{}", body["request"]["namespace"].as_str().unwrap_or_default(),
                                  body["request"]["name"].as_str().unwrap_or_default()),
                   ?admission, "eviction reviewed");
    Json(review_response(&body, &admission))
}

/// Fetches what [`admit`] decides on (as virt-api does: a GET of the pod and of the VMI) and carries out a
/// mark.
async fn decide(st: &WebhookState, request: &Value) -> Admission {
    let ns = request["namespace"].as_str().unwrap_or_default();
    let name = request["name"].as_str().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(st.client.clone(), ns);
    // KubeVirt lets the eviction through when it cannot read the pod.
    let Ok(pod) = pods.get(name).await else { return Admission::Allow };
    let pod = serde_json::to_value(pod).unwrap_or(Value::Null);
    let Some(vmi_name) = launcher_vmi_name(&pod) else { return Admission::Allow };
    let vmis: Api<DynamicObject> = Api::namespaced_with(st.client.clone(), ns, &crate::emulator::vmi_resource());
    let vmi = vmis.get(vmi_name).await.map(|o| serde_json::to_value(o).unwrap_or(Value::Null));
    let vmi = vmi.map_err(|e| e.to_string());
    match admit(&pod, vmi.as_ref().map_err(Clone::clone), st.cluster_strategy.as_deref()) {
        Admission::MarkAndDeny { node, message } => {
            // KubeVirt JSON-patches `/status/evacuationNodeName` on the VMI; our VMI CRD has a status
            // subresource, so the status is patched there.
            let pp = PatchParams { dry_run: is_dry_run(request), ..PatchParams::default() };
            let patch = Patch::Merge(json!({"status": {"evacuationNodeName": node}}));
            match vmis.patch_status(vmi_name, &pp, &patch).await {
                Ok(_) => Admission::MarkAndDeny { node, message },
                Err(e) => Admission::Deny(format!("kubevirt failed marking the vmi for eviction: {e}")),
            }
        }
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn pod(node: &str) -> Value {
        json!({"metadata": {"name": "virt-launcher-web-1-abcde", "namespace": "shop",
                            "labels": {"kubevirt.io": "virt-launcher"},
                            "annotations": {DOMAIN_ANNOTATION: "web-1"}},
               "spec": {"nodeName": node}, "status": {"phase": "Running"}})
    }

    fn vmi(strategy: Option<&str>, migratable: bool) -> Value {
        let mut v = json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1"},
                           "spec": {},
                           "status": {"phase": "Running", "nodeName": "n1",
                                      "conditions": [{"type": "LiveMigratable",
                                                      "status": if migratable { "True" } else { "False" }}]}});
        if let Some(s) = strategy {
            v["spec"]["evictionStrategy"] = json!(s);
        }
        v
    }

    const TRIGGERED: &str = "Eviction triggered evacuation of VMI \"shop/web-1\"";

    fn marks() -> Admission {
        Admission::MarkAndDeny { node: "n1".into(), message: TRIGGERED.into() }
    }

    #[test]
    fn only_running_launcher_pods_with_a_domain_are_looked_at() {
        assert_eq!(launcher_vmi_name(&pod("n1")), Some("web-1"));
        let mut p = pod("n1");
        p["metadata"]["labels"]["kubevirt.io"] = json!("virt-handler");
        assert_eq!(launcher_vmi_name(&p), None);
        let mut p = pod("n1");
        p["status"]["phase"] = json!("Succeeded");
        assert_eq!(launcher_vmi_name(&p), None);
        let mut p = pod("n1");
        p["metadata"]["annotations"] = json!({});
        assert_eq!(launcher_vmi_name(&p), None);
        assert_eq!(launcher_vmi_name(&json!(null)), None, "garbage is let through, not a panic");
    }

    #[test]
    fn the_strategy_table_of_kubevirt() {
        let p = pod("n1");
        // (VMI strategy, cluster strategy, migratable) -> decision
        let cases: &[(Option<&str>, Option<&str>, bool, Admission)] = &[
            (Some("LiveMigrate"), None, true, marks()),
            (
                Some("LiveMigrate"),
                None,
                false,
                Admission::Deny("VMI web-1 is configured with an eviction strategy but is not live-migratable".into()),
            ),
            (Some("LiveMigrateIfPossible"), None, true, marks()),
            (Some("LiveMigrateIfPossible"), None, false, Admission::Allow),
            (Some("External"), None, false, marks()),
            (Some("None"), Some("LiveMigrate"), true, Admission::Allow),
            (None, None, true, Admission::Allow),
            (None, Some("LiveMigrate"), true, marks()),
            (None, Some("LiveMigrateIfPossible"), false, Admission::Allow),
            (None, Some("None"), true, Admission::Allow),
        ];
        for (vmi_s, cluster, migratable, want) in cases {
            let v = vmi(*vmi_s, *migratable);
            assert_eq!(&admit(&p, Ok(&v), *cluster), want, "{vmi_s:?} / cluster {cluster:?} / {migratable}");
        }
    }

    #[test]
    fn a_marked_vmi_is_in_progress_a_target_pod_is_refused_and_a_missing_vmi_denies() {
        let mut v = vmi(Some("LiveMigrate"), true);
        v["status"]["evacuationNodeName"] = json!("n1");
        assert_eq!(admit(&pod("n1"), Ok(&v), None), Admission::Deny(format!("Evacuation in progress: {TRIGGERED}")));
        let v = vmi(Some("LiveMigrate"), true);
        assert_eq!(admit(&pod("n2"), Ok(&v), None), Admission::Deny("Eviction request for target Pod".into()));
        assert_eq!(
            admit(&pod("n1"), Err("not found".into()), None),
            Admission::Deny("kubevirt failed getting the vmi: not found".into())
        );
    }

    #[test]
    fn dry_run_comes_from_the_request_or_the_eviction_and_denials_are_429() {
        assert!(is_dry_run(&json!({"dryRun": true})));
        assert!(is_dry_run(&json!({"dryRun": false, "object": {"deleteOptions": {"dryRun": ["All"]}}})));
        assert!(!is_dry_run(&json!({"dryRun": false, "object": {"deleteOptions": {}}})));
        let review = json!({"apiVersion": "admission.k8s.io/v1", "request": {"uid": "r1"}});
        let r = review_response(&review, &marks());
        assert_eq!(r["response"]["uid"], "r1");
        assert_eq!(r["response"]["allowed"], false);
        assert_eq!(r["response"]["status"]["code"], 429);
        assert_eq!(r["response"]["status"]["message"], TRIGGERED);
        assert_eq!(review_response(&json!({}), &Admission::Allow)["response"]["allowed"], true);
    }

    fn marked(name: &str, node: &str) -> Value {
        let mut v = vmi(Some("LiveMigrate"), true);
        v["metadata"]["name"] = json!(name);
        v["status"]["nodeName"] = json!(node);
        v["status"]["evacuationNodeName"] = json!(node);
        v
    }

    fn vmim(vmi: &str, phase: &str) -> Value {
        json!({"metadata": {"namespace": "shop", "name": format!("m-{vmi}")}, "spec": {"vmiName": vmi},
               "status": {"phase": phase}})
    }

    const LIMITS: Limits = Limits { parallel_migrations: 5, parallel_outbound_per_node: 2 };

    #[test]
    fn evacuation_migrates_marked_vmis_within_the_limits() {
        let vs: Vec<Value> = (0..4).map(|i| marked(&format!("v{i}"), "n1")).collect();
        let refs: Vec<&Value> = vs.iter().collect();
        let none = BTreeSet::new();
        let c = evacuation_candidates(&refs, &[], |_| 1, &none, None, LIMITS);
        assert_eq!(c, vec![("shop/v0".to_string(), "n1".to_string()), ("shop/v1".into(), "n1".into())]);
        // Two running from n1: no room on that node; a Pending one holds no slot but blocks its VMI.
        let ms = [vmim("v0", "Running"), vmim("v1", "Scheduling"), vmim("v2", "Pending")];
        let mrefs: Vec<&Value> = ms.iter().collect();
        assert!(evacuation_candidates(&refs, &mrefs, |_| 1, &none, None, LIMITS).is_empty());
        let ms = [vmim("v0", "Succeeded"), vmim("v1", "Pending")];
        let mrefs: Vec<&Value> = ms.iter().collect();
        let pending = BTreeSet::from(["shop/v2".to_string()]);
        let c = evacuation_candidates(&refs, &mrefs, |_| 1, &pending, None, LIMITS);
        assert_eq!(c, vec![("shop/v0".to_string(), "n1".to_string()), ("shop/v3".into(), "n1".into())]);
        // Two active pods (a previous migration's pods still there): wait.
        assert!(evacuation_candidates(&refs[..1], &[], |_| 2, &none, None, LIMITS).is_empty());
    }

    #[test]
    fn evacuation_skips_unmarked_moved_migrating_external_and_unmigratable_vmis() {
        let mut moved = marked("moved", "n1");
        moved["status"]["nodeName"] = json!("n2");
        let mut migrating = marked("migrating", "n1");
        migrating["status"]["migrationState"] = json!({"startTimestamp": "2026-01-01T00:00:00Z"});
        let mut external = marked("external", "n1");
        external["spec"]["evictionStrategy"] = json!("External");
        let mut stuck = marked("stuck", "n1");
        stuck["status"]["conditions"] = json!([{"type": "LiveMigratable", "status": "False"}]);
        let plain = vmi(Some("LiveMigrate"), true);
        let vs = [moved, migrating, external, stuck, plain];
        let refs: Vec<&Value> = vs.iter().collect();
        assert!(evacuation_candidates(&refs, &[], |_| 1, &BTreeSet::new(), None, LIMITS).is_empty());
        let m = evacuation_migration("shop", "web-1", "n1");
        assert_eq!(m["metadata"]["generateName"], EVACUATION_PREFIX);
        assert_eq!(m["metadata"]["annotations"][EVACUATION_ANNOTATION], "n1");
        assert_eq!(m["spec"]["vmiName"], "web-1");
    }

    #[test]
    fn the_webhook_configuration_is_kubevirts_with_a_url() {
        let c = webhook_configuration(CONFIG_NAME, "https://127.0.0.1:1234/launcher-eviction-validate", "PEM");
        let w = &c.webhooks.unwrap()[0];
        assert_eq!(w.name, WEBHOOK_NAME);
        assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(w.side_effects, "NoneOnDryRun");
        assert_eq!(w.rules.as_ref().unwrap()[0].resources.as_ref().unwrap(), &vec!["pods/eviction".to_string()]);
        assert_eq!(w.client_config.ca_bundle.as_ref().unwrap().0, b"PEM");
        let cert = WebhookCert::generate().unwrap();
        assert!(cert.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem.contains("PRIVATE KEY"));
    }
}
