//! `runner`: the beanbox command line. A thin root: parse, set up logging,
//! hand over to the subcommand's `execute`.

use std::process::ExitCode;

use beanbox::commands::{self, Cli};
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_logging(&cli);
    match commands::execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(commands::EXIT_ERROR)
        }
    }
}
