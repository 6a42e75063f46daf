use clap::{Parser, Subcommand};

/// kubedrs: a Distributed Resource Scheduler for KubeVirt.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pool over simulated time with the engine, from a scenario file (no cluster needed).
    Simulate(kubedrs_sim::cli::SimulateArgs),
    /// Run the same pools and traces under kube-scheduler, the descheduler, ProxLB, kubedrs (thresholds 1-5)
    /// and the per-snapshot optimum, side by side, and write the figures (CSV, Markdown).
    Compare(kubedrs_sim::compare::CompareArgs),
    /// Run the operator (reflectors, leader election, per-pool passes, metrics, optional webhook).
    #[cfg(feature = "operator")]
    Run(kubedrs_operator::run::RunArgs),
    /// Dry run against a live cluster: print the plan of each pool (nothing is written).
    #[cfg(feature = "operator")]
    Plan(kubedrs_operator::plan_cli::PlanArgs),
    /// Print the CustomResourceDefinitions of kubedrs as YAML (`kubedrs crd | kubectl apply -f -`).
    #[cfg(feature = "operator")]
    Crd,
    /// The kubectl plugin (`kubectl drs ...` when installed as `kubectl-drs`): maintenance, status, plan,
    /// explain.
    #[cfg(feature = "operator")]
    Drs(kubedrs_operator::kubectl::KubectlDrs),
}

fn main() -> anyhow::Result<()> {
    // Installed (or linked) as `kubectl-drs`, the binary is the kubectl plugin.
    #[cfg(feature = "operator")]
    if std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_stem().map(|s| s.to_string_lossy().into_owned()))
        .is_some_and(|name| name == "kubectl-drs")
    {
        return kubedrs_operator::kubectl::run(kubedrs_operator::kubectl::KubectlDrs::parse());
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => kubedrs_sim::cli::run(args),
        Command::Compare(args) => kubedrs_sim::compare::run(args),
        #[cfg(feature = "operator")]
        Command::Run(args) => kubedrs_operator::run::run(args),
        #[cfg(feature = "operator")]
        Command::Plan(args) => kubedrs_operator::plan_cli::run(args),
        #[cfg(feature = "operator")]
        Command::Crd => {
            print!("{}", kubedrs_operator::crd::crds_yaml()?);
            Ok(())
        }
        #[cfg(feature = "operator")]
        Command::Drs(args) => kubedrs_operator::kubectl::run(args),
    }
}
