//! The `keelson` binary: parses the command line and hands off.
#![forbid(unsafe_code)]

mod cli;

fn main() -> anyhow::Result<()> {
    cli::Cli::parse_args().run()
}
