//! `runner call`: run one task once in the sandbox, no queue. Prints the
//! JSON result on stdout; a failure is one line on stderr and an exit code
//! that says which kind, and a task that returned `err(value)` has `value`
//! on stdout as JSON (what a reply carries as `error.value`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use beanbox_queue::KwargsError;
use clap::Args;

use super::{CacheArgs, EXIT_BAD_INPUT, LimitArgs, exit_code_for, exit_codes_help};
use crate::sandbox::{Budget, CallContext, Sandbox};

pub(super) const AFTER_HELP: &str = concat!(
    "Examples:
  runner call hello.wasm task_one --kwargs '{\"arg1\":\"a\",\"arg2\":\"b\",\"arg3\":\"c\"}'
  runner call hostile.wasm spin --fuel 1000000 --timeout 2

Task names and kwargs keys match in snake_case or kebab-case.
The guest's own stdout and stderr are copied to stderr.
The compiled component is cached (see --cache-dir): only the first call
of a version compiles it.

",
    exit_codes_help!()
);

/// Arguments of `runner call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The component file (.wasm).
    pub module: PathBuf,
    /// The task (export) to call.
    pub task: String,
    /// The kwargs, a JSON object.
    #[arg(long, default_value = "{}")]
    pub kwargs: String,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Runs `runner call`.
///
/// # Errors
///
/// Runner errors only; a failed task is an exit code.
pub fn execute(args: CallArgs) -> anyhow::Result<ExitCode> {
    let limits = match args.limits.limits() {
        Ok(l) => l,
        Err(e) => return Ok(bad_input(&e.to_string())),
    };
    let kwargs = match beanbox_queue::parse_kwargs(&args.kwargs) {
        Ok(map) => map,
        Err(KwargsError::NotObject(other)) => {
            return Ok(bad_input(&format!(
                "--kwargs must be a JSON object, got {other}"
            )));
        }
        Err(KwargsError::NotJson(e)) => {
            return Ok(bad_input(&format!("--kwargs is not valid JSON: {e}")));
        }
    };
    let sandbox = Sandbox::new()?;
    let module = match args.cache.load(&sandbox, &args.module) {
        Ok(m) => m,
        Err(e) => return Ok(bad_input(&e.to_string())),
    };
    let ctx = CallContext::standalone(&args.task, limits);
    let outcome = super::runtime()?.block_on(module.call(&args.task, &kwargs, &ctx));
    let mut err = std::io::stderr().lock();
    for output in [&outcome.stdout, &outcome.stderr] {
        err.write_all(output).ok();
        // Keep our own last line (the error) on a line of its own.
        if output.last().is_some_and(|&b| b != b'\n') {
            err.write_all(b"\n").ok();
        }
    }
    drop(err);
    // Lines dropped or puts refused do not fail the call; say so. (A full
    // stdout or stderr does fail it, and the error says that.)
    for hit in &outcome.budget_hits {
        if !matches!(hit.budget, Budget::Stdout | Budget::Stderr) {
            eprintln!("warning: {hit}");
        }
    }
    match outcome.result {
        Ok(value) => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &value).context("failed to write the result")?;
            writeln!(out).context("failed to write the result")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(value) = e.guest_value() {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer(&mut out, value).context("failed to write the err value")?;
                writeln!(out).context("failed to write the err value")?;
            }
            Ok(ExitCode::from(exit_code_for(&e)))
        }
    }
}

fn bad_input(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_BAD_INPUT)
}
