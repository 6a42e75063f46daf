//! Peak memory of one engine pass against pool size: `cargo bench -p kubedrs-engine --bench memory`.
//!
//! Each size runs in a child process of this binary, so the peak resident set (VmHWM) belongs to that
//! size alone. Prints a table of VMs, peak MiB and bytes per VM; memory is linear in VMs when the last
//! column stays flat.

use kubedrs_engine::{self, build};
use std::process::Command;

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let nodes: usize = args[pos + 1].parse().expect("nodes");
        let vms: usize = args[pos + 2].parse().expect("vms");
        let base = peak_kib();
        let snap = build::generated_pool(nodes, vms, 7);
        let plan = kubedrs_engine::plan(&snap).expect("valid");
        println!("{} {} {}", vms, peak_kib().saturating_sub(base), plan.moves.len());
        return;
    }
    let me = std::env::current_exe().expect("own path");
    println!("{:>8} {:>8} {:>12} {:>14}", "nodes", "VMs", "peak MiB", "bytes per VM");
    for (nodes, vms) in [(1_000, 20_000), (2_500, 50_000), (5_000, 100_000), (10_000, 200_000)] {
        let out =
            Command::new(&me).args(["--child", &nodes.to_string(), &vms.to_string()]).output().expect("child runs");
        let line = String::from_utf8_lossy(&out.stdout);
        let mut it = line.split_whitespace().skip(1);
        let kib: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        println!("{nodes:>8} {vms:>8} {:>12.1} {:>14}", kib as f64 / 1024.0, kib * 1024 / vms as u64);
    }
}
