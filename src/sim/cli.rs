//! `kubedrs simulate`.

/// Arguments of `kubedrs simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Scenario file (YAML), e.g. examples/scenarios/balanced-start.yaml.
    pub scenario: std::path::PathBuf,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::bail!("simulate {} is not built yet", args.scenario.display())
}
