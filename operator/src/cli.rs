//! Command-line interface of the `keelson` binary.

use clap::{Parser, Subcommand};
use std::io::Write;

/// Keelson runs the whole life of a Linkerd service mesh: install, upgrade,
/// identity, injection and policy.
#[derive(Parser, Debug)]
#[command(name = "keelson", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions of Keelson's API (keelson.dev) as YAML.
    Crds,
}

impl Cli {
    pub fn parse_args() -> Self {
        Self::parse()
    }

    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Crds => {
                std::io::stdout().write_all(keelson_crds::crds_yaml().as_bytes())?;
                Ok(())
            }
        }
    }
}
