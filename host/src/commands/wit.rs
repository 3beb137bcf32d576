//! `runner wit`: the WIT package `beanbox:task@0.1.0` (what the host offers
//! every task), embedded in the runner, so that Python and JavaScript
//! authors get it without the repository.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::EXIT_OK;

/// The WIT package `beanbox:task@0.1.0`, as the guest SDK ships it (the one
/// copy: the host's bindings and the SDK's are generated from the same file).
pub const TASK_WIT: &str = include_str!("../../../guest-sdk/wit/task.wit");

/// The file name `runner wit --out DIR` writes in DIR.
pub const TASK_WIT_FILE: &str = "task.wit";

pub(super) const AFTER_HELP: &str = "\
Without --out, prints the WIT to stdout.

Examples:
  runner wit --out wit/deps/beanbox-task   # for componentize-py / componentize-js
  runner wit | less

Exit codes:
  0  success
  1  the directory cannot be created or the file written (the message says why)";

/// Arguments of `runner wit`.
#[derive(Debug, Args)]
pub struct WitArgs {
    /// Write `task.wit` into this directory (created if missing; an existing
    /// `task.wit` is replaced).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Runs `runner wit`.
///
/// # Errors
///
/// When `--out` is not a directory or the file cannot be written (exit 1).
pub fn execute(args: WitArgs) -> anyhow::Result<ExitCode> {
    match args.out {
        None => print!("{TASK_WIT}"),
        Some(dir) => println!("{}", write(&dir)?.display()),
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// Writes [`TASK_WIT`] to `dir/task.wit`, creating `dir`; returns the file's
/// path.
fn write(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!(
            "--out {} is not a directory; give the directory to write {TASK_WIT_FILE} into",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create --out directory {}", dir.display()))?;
    let path = dir.join(TASK_WIT_FILE);
    std::fs::write(&path, TASK_WIT).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
