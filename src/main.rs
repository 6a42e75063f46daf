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
    Simulate(kubedrs::sim::cli::SimulateArgs),
    /// Run the same pools and traces under kube-scheduler, the descheduler, ProxLB, kubedrs (thresholds 1-5)
    /// and the per-snapshot optimum, side by side, and write the figures (CSV, Markdown).
    Compare(kubedrs::sim::compare::CompareArgs),
    /// Run the operator (reflectors, leader election, per-pool passes, metrics, optional webhook).
    Run(kubedrs::operator::run::RunArgs),
    /// Dry run against a live cluster: print the plan of each pool (nothing is written).
    Plan(kubedrs::operator::plan_cli::PlanArgs),
    /// Print the CustomResourceDefinitions of kubedrs as YAML (`kubedrs crd | kubectl apply -f -`).
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => kubedrs::sim::cli::run(args),
        Command::Compare(args) => kubedrs::sim::compare::run(args),
        Command::Run(args) => kubedrs::operator::run::run(args),
        Command::Plan(args) => kubedrs::operator::plan_cli::run(args),
        Command::Crd => {
            print!("{}", kubedrs::operator::crd::crds_yaml()?);
            Ok(())
        }
    }
}
