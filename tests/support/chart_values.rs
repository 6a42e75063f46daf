//! The chart's values combinations, shared by `tests/chart.rs` (`helm lint` and `helm template`, with what
//! each value must change) and the end-to-end scenario that applies every render to a real API server with a
//! server-side dry run (`e2e/harness/tests/e2e.rs`, scenario j): each `helm install` command the docs show,
//! and each set of `--set` flags the value checks render.

use std::path::{Path, PathBuf};

pub const DEFAULTS: &[&str] = &[];
pub const DRY_RUN_EXTRA_ARGS: &[&str] =
    &["--set", "dryRun=true", "--set", "extraArgs={--failure-backoff=2m,--keep-finished=50}"];
pub const EXTRA_ENV: &[&str] = &["--set", "extraEnv[0].name=KUBEDRS_DEMAND_INTERVAL", "--set", "extraEnv[0].value=1m"];
pub const NETWORK_POLICY: &[&str] = &["--set", "networkPolicy.enabled=true"];
pub const NETWORK_POLICY_FROM_WITH_WEBHOOK: &[&str] = &[
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
    "--set",
    "webhook.enabled=true",
];
pub const NO_PRIORITY_CLASS: &[&str] = &["--set", "priorityClassName="];
pub const NAME_OVERRIDE: &[&str] = &["--set", "nameOverride=balancer"];
pub const FULLNAME_OVERRIDE: &[&str] = &["--set", "fullnameOverride=scheduler"];
pub const WEBHOOK: &[&str] = &["--set", "webhook.enabled=true"];
pub const WEBHOOK_EXISTING_SECRET: &[&str] = &[
    "--set",
    "webhook.enabled=true",
    "--set",
    "webhook.certManager.enabled=false",
    "--set",
    "webhook.existingSecret=tls",
    "--set",
    "webhook.caBundle=Cg==",
];
pub const MONITORING: &[&str] = &["--set", "serviceMonitor.enabled=true", "--set", "grafanaDashboard.enabled=true"];

/// Every value set above, by name.
pub const VALUE_SETS: &[(&str, &[&str])] = &[
    ("defaults", DEFAULTS),
    ("dryRun, extraArgs", DRY_RUN_EXTRA_ARGS),
    ("extraEnv", EXTRA_ENV),
    ("networkPolicy", NETWORK_POLICY),
    ("networkPolicy.metricsFrom, webhook", NETWORK_POLICY_FROM_WITH_WEBHOOK),
    ("no priorityClassName", NO_PRIORITY_CLASS),
    ("nameOverride", NAME_OVERRIDE),
    ("fullnameOverride", FULLNAME_OVERRIDE),
    ("webhook", WEBHOOK),
    ("webhook with an existing secret", WEBHOOK_EXISTING_SECRET),
    ("serviceMonitor, grafanaDashboard", MONITORING),
];

/// Every combination: the value sets, then the documented installs.
#[allow(dead_code)] // tests/chart.rs checks each set with its own assertions
pub fn all_combinations(repo: &Path) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> =
        VALUE_SETS.iter().map(|(n, f)| (n.to_string(), f.iter().map(|s| s.to_string()).collect())).collect();
    out.extend(documented_installs(repo));
    out
}

/// The `helm install` commands of README.md and docs/*.md, each as its `--set`/`-f` flags (continuation
/// lines joined, comments dropped).
pub fn documented_installs(repo: &Path) -> Vec<(String, Vec<String>)> {
    let mut files = vec![repo.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo.join("docs"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = vec![];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let mut joined = String::new();
        for line in text.lines() {
            let line = line.split(" # ").next().unwrap_or("").trim_end();
            if let Some(head) = line.strip_suffix('\\') {
                joined.push_str(head);
                continue;
            }
            joined.push_str(line);
            let cmd = std::mem::take(&mut joined);
            let Some(at) = cmd.find("helm install").or_else(|| cmd.find("helm upgrade")) else { continue };
            let words: Vec<&str> = cmd[at..].split_whitespace().collect();
            if !words.iter().any(|w| w.contains("charts/kubedrs")) {
                continue;
            }
            let mut flags = vec![];
            let mut i = 0;
            while i < words.len() {
                let w = words[i];
                if matches!(w, "--set" | "--set-string" | "-f" | "--values") && i + 1 < words.len() {
                    let v = words[i + 1].trim_matches(|c| c == '`' || c == '\'' || c == '"');
                    let v =
                        if w == "-f" || w == "--values" { repo.join(v).display().to_string() } else { v.to_string() };
                    flags.push(w.to_string());
                    flags.push(v);
                    i += 2;
                } else {
                    i += 1;
                }
            }
            out.push((format!("{}: {}", f.file_name().unwrap_or_default().to_string_lossy(), cmd[at..].trim()), flags));
        }
    }
    out
}
