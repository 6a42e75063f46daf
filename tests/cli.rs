//! The `kubedrs` binary as users run it.

use std::process::Command;

fn kubedrs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubedrs")).args(args).output().expect("kubedrs runs")
}

#[test]
fn simulate_without_a_file_runs_the_embedded_maintenance_scenario() {
    let out = kubedrs(&["simulate", "-q"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("maintenance"), "{stdout}");
    assert!(stdout.contains("demand met"), "{stdout}");
    // The node in maintenance is emptied by live migration: the summary counts maintenance moves.
    let line = stdout.lines().find(|l| l.trim_start().starts_with("migrations")).expect("a migrations line");
    let moves: u32 = line
        .split("maintenance ")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches(')').split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("a maintenance count");
    assert!(moves > 0, "{line}");
}

#[test]
fn a_bad_scenario_names_file_line_and_field_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("kubedrs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "duration: 1h\npool:\n  migrationThreshold: 9\nnodes:\n- {name: n, count: 1, cpu: 4, memory: 8Gi}\n",
    )
    .unwrap();
    let out = kubedrs(&["simulate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.yaml:3"), "{stderr}");
    assert!(stderr.contains("migrationThreshold"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn crd_prints_the_hostpool_crd() {
    let out = kubedrs(&["crd"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("kind: CustomResourceDefinition") && stdout.contains("hostpools.kubedrs.io"), "{stdout}");
}

/// The same binary, installed as `kubectl-drs` (a copy or a link), is the kubectl plugin.
#[test]
fn linked_as_kubectl_drs_the_binary_is_the_kubectl_plugin() {
    let dir = std::env::temp_dir().join(format!("kubedrs-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("kubectl-drs");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubedrs"), &plugin).unwrap();
    let out = Command::new(&plugin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(help.contains("Usage: kubectl drs"), "{help}");
    for command in ["maintenance", "status", "plan", "explain"] {
        assert!(help.contains(command), "{command} missing: {help}");
    }
    // As kubedrs, the plugin is the `drs` subcommand.
    let out = kubedrs(&["drs", "maintenance", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("enter"));
    std::fs::remove_dir_all(&dir).unwrap();
}
