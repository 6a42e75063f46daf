//! The Helm chart: `helm lint` and `helm template` of the default values, of every `helm install` command the
//! docs show, and of each documented value, with what each value must change in the rendered objects; the
//! values schema refuses misspelled keys and wrong types; `manifests/install.yaml` is the default render.
//!
//! helm comes from the end-to-end cache (`e2e/cluster build` or `up` builds it into `e2e/.cache/bin`, or
//! `$E2E_CACHE_DIR/bin`), or `$HELM`. Without it these tests say so and pass, unless `KUBEDRS_REQUIRE_HELM=1`
//! (set by `.ci/run` once the e2e suite has built helm), where a missing helm fails them.
#![allow(clippy::unwrap_used)]

#[path = "support/chart_values.rs"]
mod chart_values;

use chart_values::*;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> String {
    repo().join("charts/kubedrs").display().to_string()
}

/// The helm binary, or `None` (with a note) where there is none and none is required.
fn helm() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HELM") {
        return Some(PathBuf::from(h));
    }
    let cache = std::env::var_os("E2E_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("e2e/.cache"));
    let found = std::fs::read_dir(cache.join("bin"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("helm"))
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = format!("no helm under {}/bin (built by `e2e/cluster build`) and no $HELM", cache.display());
        if std::env::var("KUBEDRS_REQUIRE_HELM").is_ok_and(|v| v == "1") {
            panic!("{msg}");
        }
        eprintln!("skipped: {msg}");
    }
    found
}

/// Runs helm; `Err(output)` when it fails.
fn run(helm: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).into_owned()) } else { Err(text) }
}

/// `helm lint` then `helm template` with `extra` flags; the rendered objects.
fn render(helm: &Path, extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut lint = vec!["lint", "--strict", chart.as_str()];
    lint.extend_from_slice(extra);
    run(helm, &lint).unwrap_or_else(|e| panic!("helm lint {extra:?}:\n{e}"));
    let mut t = vec!["template", "kubedrs", chart.as_str(), "-n", "kubedrs", "--kube-version", "1.33.0"];
    t.extend_from_slice(extra);
    let text = run(helm, &t).unwrap_or_else(|e| panic!("helm template {extra:?}:\n{e}"));
    serde_yaml::Deserializer::from_str(&text).map(|d| Value::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect()
}

fn find<'a>(objs: &'a [Value], kind: &str) -> Option<&'a Value> {
    objs.iter().find(|o| o["kind"] == kind)
}

fn container(objs: &[Value]) -> &Value {
    &find(objs, "Deployment").expect("a Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn args(objs: &[Value]) -> Vec<String> {
    container(objs)["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

#[test]
fn every_documented_helm_install_lints_and_renders() {
    let Some(helm) = helm() else { return };
    let installs = documented_installs(&repo());
    assert!(installs.len() >= 4, "the docs show helm install commands: {installs:#?}");
    for (what, flags) in installs {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let objs = render(&helm, &flags);
        assert!(find(&objs, "Deployment").is_some(), "{what}");
    }
}

#[test]
fn each_value_does_what_values_yaml_says() {
    let Some(helm) = helm() else { return };

    let d = render(&helm, DEFAULTS);
    assert_eq!(args(&d), ["run", "--leader-elect"]);
    let pod = &find(&d, "Deployment").unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "system-cluster-critical", "a default priority class");
    let image = container(&d)["image"].as_str().unwrap();
    assert_eq!(
        image,
        format!("ghcr.io/kubedrs/kubedrs:{}", env!("CARGO_PKG_VERSION")),
        "the image is the crate's version"
    );
    assert!(find(&d, "NetworkPolicy").is_none(), "no NetworkPolicy unless asked");
    assert_eq!(find(&d, "Deployment").unwrap()["metadata"]["name"], "kubedrs");

    let d = render(&helm, DRY_RUN_EXTRA_ARGS);
    assert_eq!(args(&d), ["run", "--leader-elect", "--dry-run", "--failure-backoff=2m", "--keep-finished=50"]);

    let d = render(&helm, EXTRA_ENV);
    let env = container(&d)["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "KUBEDRS_DEMAND_INTERVAL" && e["value"] == "1m"), "{env:?}");

    let d = render(&helm, NETWORK_POLICY);
    let np = find(&d, "NetworkPolicy").expect("a NetworkPolicy");
    assert_eq!(np["spec"]["ingress"].as_array().unwrap().len(), 1, "only /metrics without the webhook");
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], "metrics");
    assert!(np["spec"]["ingress"][0].get("from").is_none(), "every source by default");
    let d = render(&helm, NETWORK_POLICY_FROM_WITH_WEBHOOK);
    let np = find(&d, "NetworkPolicy").unwrap();
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(np["spec"]["ingress"][1]["ports"][0]["port"], "webhook");

    let d = render(&helm, NO_PRIORITY_CLASS);
    assert!(find(&d, "Deployment").unwrap()["spec"]["template"]["spec"].get("priorityClassName").is_none());

    let d = render(&helm, NAME_OVERRIDE);
    let dep = find(&d, "Deployment").unwrap();
    assert_eq!(dep["metadata"]["name"], "kubedrs-balancer");
    assert_eq!(dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"], "balancer");
    let d = render(&helm, FULLNAME_OVERRIDE);
    for kind in ["Deployment", "ClusterRole", "Service", "ServiceAccount"] {
        assert_eq!(find(&d, kind).unwrap()["metadata"]["name"], "scheduler", "{kind}");
    }
    assert_eq!(find(&d, "ClusterRoleBinding").unwrap()["subjects"][0]["name"], "scheduler");

    let d = render(&helm, WEBHOOK);
    assert!(find(&d, "MutatingWebhookConfiguration").is_some() && find(&d, "Certificate").is_some());
    let v = find(&d, "ValidatingWebhookConfiguration").expect("the HostPool overlap webhook");
    assert_eq!(v["webhooks"][0]["failurePolicy"], "Ignore", "a down operator must not block HostPools");
    assert_eq!(v["webhooks"][0]["clientConfig"]["service"]["path"], "/validate-hostpools");
    assert!(find(&render(&helm, &[]), "ValidatingWebhookConfiguration").is_none(), "behind webhook.enabled");
    let d = render(&helm, WEBHOOK_EXISTING_SECRET);
    assert!(find(&d, "Certificate").is_none());
    let d = render(&helm, MONITORING);
    assert!(find(&d, "ServiceMonitor").is_some() && find(&d, "ConfigMap").is_some());
}

#[test]
fn the_values_schema_refuses_typos_and_wrong_types() {
    let Some(helm) = helm() else { return };
    let chart = chart();
    for bad in ["dryrun=true", "replicas=two", "logFormat=yaml", "webhook.failurePolicy=Sometimes", "extraArgs={run}"] {
        let r = run(&helm, &["template", "kubedrs", &chart, "--kube-version", "1.33.0", "--set", bad]);
        let err = r.expect_err(&format!("--set {bad} must be refused"));
        assert!(err.contains("schema"), "--set {bad}: {err}");
    }
}

/// The RBAC rules of the chart, as (api group, resource, verbs).
fn rules(objs: &[Value]) -> Vec<(String, String, Vec<String>)> {
    let mut out = vec![];
    for kind in ["ClusterRole", "Role"] {
        for o in objs.iter().filter(|o| o["kind"] == kind) {
            for r in o["rules"].as_array().unwrap() {
                let verbs: Vec<String> =
                    r["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
                for g in r["apiGroups"].as_array().unwrap() {
                    for res in r["resources"].as_array().unwrap() {
                        out.push((g.as_str().unwrap().to_string(), res.as_str().unwrap().to_string(), verbs.clone()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_plain_install_is_the_default_render_and_grants_only_what_the_code_uses() {
    let install = std::fs::read_to_string(repo().join("manifests/install.yaml")).unwrap();
    let objs: Vec<Value> = serde_yaml::Deserializer::from_str(&install)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    // Verbs no code path uses (docs/operator.md, "RBAC, rule by rule"): no write to VMs or VMIs, no Secrets.
    for (group, resource, verbs) in rules(&objs) {
        if group == "kubevirt.io" && resource != "virtualmachineinstancemigrations" {
            assert_eq!(verbs, ["list", "watch"], "{resource}: kubedrs only reads VMs and VMIs");
        }
        // Leases are the one update: renewing, taking over or releasing at the listed resourceVersion.
        let update_ok = group == "coordination.k8s.io" && resource == "leases";
        assert!(!verbs.iter().any(|v| v == "*" || (v == "update" && !update_ok)), "{group}/{resource}: {verbs:?}");
        assert!(!["secrets", "configmaps"].contains(&resource.as_str()), "{resource}");
    }
    let Some(helm) = helm() else { return };
    let rendered =
        run(&helm, &["template", "kubedrs", &chart(), "-n", "kubedrs", "--include-crds", "--kube-version", "1.33.0"])
            .unwrap();
    let body =
        install.split_once("\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubedrs\n").map(|(_, b)| b);
    assert_eq!(body, Some(rendered.as_str()), "manifests/install.yaml is stale: regenerate it (manifests/README.md)");
}

#[test]
fn the_chart_pulls_the_image_of_the_crate_version() {
    let chart = std::fs::read_to_string(repo().join("charts/kubedrs/Chart.yaml")).unwrap();
    let chart: Value = serde_yaml::from_str(&chart).unwrap();
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"), "Chart.yaml appVersion is the image tag");
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("charts/kubedrs/values.yaml")).unwrap()).unwrap();
    assert_eq!(values["image"]["tag"], "", "an empty tag means appVersion");
    // The schema knows every top-level value (and values.yaml uses no key the schema lacks).
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("charts/kubedrs/values.schema.json")).unwrap())
            .unwrap();
    let known: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    for k in values.as_object().unwrap().keys() {
        assert!(known.contains(&k), "values.yaml key {k} is not in values.schema.json");
    }
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errs: Vec<String> = validator.iter_errors(&values).map(|e| e.to_string()).collect();
    assert!(errs.is_empty(), "values.yaml against values.schema.json: {errs:?}");
}

#[test]
fn the_dockerfile_and_the_ci_image_agree() {
    let docker = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let last = docker.rsplit("\nFROM ").next().unwrap();
    assert!(last.starts_with("scratch"), "the final stage is an empty base, as .ci/image builds it");
    for line in [
        "USER 65532:65532",
        "ENTRYPOINT [\"/usr/local/bin/kubedrs\"]",
        "CMD [\"run\"]",
        "COPY --from=build /usr/local/bin/kubedrs /usr/local/bin/kubedrs",
    ] {
        assert!(last.contains(line), "Dockerfile final stage: {line}");
    }
    assert!(docker.contains("crt-static"), "a static binary, as .ci/image builds it");
    assert!(docker.contains("strip --strip-debug"), "debug info stripped, as .ci/image does");
    let ci = std::fs::read_to_string(repo().join(".ci/image")).unwrap();
    for part in [
        "from scratch",
        "\"$OUT/kubedrs\" /usr/local/bin/kubedrs",
        "strip --strip-debug",
        "--user 65532:65532 --entrypoint '[\"/usr/local/bin/kubedrs\"]' --cmd run",
        "crt-static",
    ] {
        assert!(ci.contains(part), ".ci/image: {part}");
    }
    let deployment = std::fs::read_to_string(repo().join("charts/kubedrs/templates/deployment.yaml")).unwrap();
    assert!(deployment.contains("runAsUser: 65532"), "the chart runs the image's user");
}
