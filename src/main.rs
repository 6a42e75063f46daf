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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => kubedrs::sim::cli::run(args),
    }
}
