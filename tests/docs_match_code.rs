//! The docs say what the code does: every metric name and label, annotation and label key, CLI flag,
//! environment variable and Event reason that README.md, docs/ and the chart's values name exists in the code
//! (the metrics as the operator encodes them, the flags as `kubedrs <command> --help` prints them), and the
//! minimum Kubernetes version is the chart's everywhere.
#![cfg(feature = "operator")]
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, docs/*.md (not the generated benchmark figures) and the chart's values, with their names.
fn docs() -> Vec<(String, String)> {
    let mut files =
        vec![repo().join("README.md"), repo().join("charts/kubedrs/values.yaml"), repo().join("manifests/README.md")];
    let mut d: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    d.sort();
    files.extend(d);
    files
        .into_iter()
        .map(|f| (f.strip_prefix(repo()).unwrap().display().to_string(), std::fs::read_to_string(&f).unwrap()))
        .collect()
}

/// Every word starting with `prefix` in `text`, made of the characters `ok` accepts.
fn words(text: &str, prefix: &str, ok: impl Fn(char) -> bool) -> Vec<(usize, String)> {
    let mut out = vec![];
    let mut from = 0;
    while let Some(at) = text[from..].find(prefix) {
        let start = from + at;
        let before = text[..start].chars().next_back();
        let rest = &text[start + prefix.len()..];
        let len: usize = rest.chars().take_while(|c| ok(*c)).map(char::len_utf8).sum();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) && len > 0 {
            out.push((start, format!("{prefix}{}", &rest[..len])));
        }
        from = start + prefix.len();
    }
    out
}

/// The text of every Rust source file under `dirs`.
fn sources(dirs: &[&str]) -> String {
    fn walk(p: &Path, out: &mut String) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = String::new();
    for d in dirs {
        walk(&repo().join(d), &mut out);
    }
    out
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kubedrs")).args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "kubedrs {args:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn metric_names_and_labels_in_the_docs_are_the_ones_the_operator_exposes() {
    use kubedrs_engine::{NodeLoad, Plan};
    let m = kubedrs_operator::telemetry::Metrics::new();
    let load = NodeLoad { node: "n1".into(), cpu: 0.5, memory: 0.25, combined: 0.4, vms: 1, counted: true };
    let plan = Plan { imbalance_before: 0.2, target_imbalance: 0.1, loads: vec![load], ..Plan::default() };
    m.record_plan("prod", &plan, 1, 0.05);
    m.count_migration("prod", "balance", "succeeded");
    m.pass_error("prod", "observe");
    m.pass_put_off("prod", "caches-stale");
    m.objects_skipped.get_or_create(&vec![("kind".to_string(), "HostPool".to_string())]).set(1);
    let text = m.encode().unwrap();
    // name -> label keys, with the suffixes Prometheus adds to counters and histograms.
    let mut known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            known.entry(name.to_string()).or_default();
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[],
            };
            for s in suffixes {
                known.entry(format!("{name}{s}")).or_default();
            }
        } else if !line.starts_with('#') && line.contains('{') {
            let (name, rest) = line.split_once('{').unwrap();
            let labels = rest.split_once('}').unwrap().0;
            let keys: BTreeSet<String> =
                labels.split(',').map(|kv| kv.split_once('=').unwrap().0.to_string()).collect();
            let base =
                ["_bucket", "_sum", "_count", "_total"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            for n in [name, base] {
                known.entry(n.to_string()).or_default().extend(keys.iter().cloned());
            }
        }
    }
    let mut checked = 0;
    for (file, text) in docs() {
        for (at, name) in words(&text, "kubedrs_", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            let name = name.trim_end_matches('_');
            let Some(labels) = known.get(name) else {
                panic!("{file}: metric {name} is not one the operator exposes: {:?}", known.keys().collect::<Vec<_>>());
            };
            let after = &text[at + name.len()..];
            if let Some(inner) = after.strip_prefix('{').and_then(|r| r.split_once('}')).map(|(i, _)| i) {
                for kv in inner.split(',') {
                    let key = kv.split('=').next().unwrap().trim();
                    assert!(labels.contains(key), "{file}: {name} has no label {key:?} (it has {labels:?})");
                    if let Some(v) = kv.split_once('=').map(|(_, v)| v.trim_matches('"'))
                        && key == "result"
                    {
                        assert!(["succeeded", "failed"].contains(&v), "{file}: {name}{{result={v}}}");
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} metric names checked");
}

#[test]
fn annotation_and_label_keys_in_the_docs_are_the_codes() {
    let code = sources(&["crates", "e2e/harness/src"]);
    let mut checked = 0;
    for (file, text) in docs() {
        for (_, key) in words(&text, "kubedrs.io/", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            // `kubectl annotate node n kubedrs.io/maintenance-` removes the key.
            let key = key.trim_end_matches('-');
            if key == "kubedrs.io/v1alpha1" {
                continue;
            }
            assert!(code.contains(&format!("\"{key}\"")), "{file}: {key} is no key the code reads or writes");
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} keys checked");
}

/// The flags on a command line of the docs: what follows `kubedrs <command>` up to a pipe, a comment or the
/// next command.
fn documented_flags() -> Vec<(String, String, String)> {
    let mut out = vec![];
    for (file, text) in docs() {
        for line in text.lines() {
            for cmd in ["simulate", "compare", "run", "plan", "crd"] {
                for (at, _) in words(line, &format!("kubedrs {cmd}"), |_| false)
                    .into_iter()
                    .chain(line.match_indices(&format!("kubedrs {cmd} ")).map(|(i, m)| (i, m.to_string())))
                {
                    let rest = &line[at + "kubedrs ".len() + cmd.len()..];
                    let end = rest.find(['|', '#', ';', '`', ')']).unwrap_or(rest.len());
                    for (_, flag) in words(&rest[..end], "--", |c| c.is_ascii_lowercase() || c == '-') {
                        out.push((file.clone(), cmd.to_string(), flag.trim_end_matches('-').to_string()));
                    }
                }
            }
            // The option table of docs/simulate.md.
            if file == "docs/simulate.md" && line.starts_with("| `--") {
                let flag: String = line[3..].chars().take_while(|c| *c != '`' && *c != ' ').collect();
                out.push((file.clone(), "simulate".into(), flag));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn cli_flags_in_the_docs_are_in_the_help() {
    let flags = documented_flags();
    assert!(flags.len() >= 8, "{flags:?}");
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    for (file, cmd, flag) in &flags {
        let h = helps.entry(cmd.clone()).or_insert_with(|| help(&[cmd]));
        let long = format!("{flag} ");
        let with_value = format!("{flag} <");
        assert!(
            h.contains(&long) || h.contains(&with_value) || h.lines().any(|l| l.trim_end().ends_with(flag.as_str())),
            "{file}: `kubedrs {cmd} {flag}` is not in `kubedrs {cmd} --help`:\n{h}"
        );
    }
}

#[test]
fn environment_variables_in_the_operator_docs_are_the_run_flags() {
    let h = help(&["run"]);
    let mut checked = 0;
    for (file, text) in docs() {
        if !["docs/operator.md", "docs/quickstart.md", "charts/kubedrs/values.yaml", "README.md"]
            .contains(&file.as_str())
        {
            continue;
        }
        for (_, var) in words(&text, "KUBEDRS_", |c| c.is_ascii_uppercase() || c == '_') {
            assert!(
                h.contains(&format!("[env: {var}")),
                "{file}: {var} is not an environment variable of `kubedrs run`"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");
}

#[test]
fn the_event_reasons_to_alert_on_are_sent_by_the_code() {
    let code = sources(&["crates/operator/src"]);
    let text = std::fs::read_to_string(repo().join("docs/quickstart.md")).unwrap();
    let table = &text[text.find("| Event reason |").expect("the alert table")..];
    let table = &table[..table.find("\n\n").unwrap_or(table.len())];
    let mut n = 0;
    for row in table.lines().skip(2) {
        let first = row.split('|').nth(1).unwrap();
        for reason in first.split('`').skip(1).step_by(2) {
            assert!(
                code.contains(&format!("\"{reason}\"")),
                "docs/quickstart.md: Event reason {reason} is not sent by the operator"
            );
            n += 1;
        }
    }
    assert!(n >= 10, "{n}");
    // The Warnings of maintenance and migrations are all there.
    for reason in ["MaintenanceBlocked", "MigrationFailed", "MigrationRefused", "InvalidSpec", "FailedPlacement"] {
        assert!(table.contains(&format!("`{reason}`")), "{reason} is missing from the alert table");
    }
}

#[test]
fn the_minimum_kubernetes_version_is_the_charts_everywhere() {
    let chart = std::fs::read_to_string(repo().join("charts/kubedrs/Chart.yaml")).unwrap();
    let min = chart.lines().find_map(|l| l.strip_prefix("kubeVersion: ")).unwrap();
    let min = min.trim_matches('"').trim_start_matches(">=");
    let min = min.split('-').next().unwrap().trim_end_matches(".0");
    let mut seen = 0;
    for (file, text) in docs() {
        for (at, _) in text.match_indices("Kubernetes ") {
            let rest = text[at + "Kubernetes ".len()..].trim_start_matches(">= ").trim_start_matches(">=");
            let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let v = v.trim_end_matches('.');
            let after = &rest[v.len()..];
            let is_minimum = text[at + "Kubernetes ".len()..].starts_with(">=")
                || after.starts_with(" or later")
                || after.starts_with('+');
            if v.starts_with("1.") && is_minimum {
                assert_eq!(v, min, "{file}: Kubernetes {v} as a minimum, the chart says {min}");
                seen += 1;
            }
        }
    }
    assert!(seen >= 2, "the minimum is stated in the docs ({seen})");
}

#[test]
fn migration_results_are_named_as_the_code_counts_them() {
    for (file, text) in docs() {
        for line in text.lines().filter(|l| l.contains("kubedrs_migrations_total") || l.contains("migrations.totals")) {
            assert!(
                !line.contains("aborted"),
                "{file}: migrations end `succeeded` or `failed`, never `aborted`: {line}"
            );
        }
    }
}
