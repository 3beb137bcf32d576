//! `runner inspect`: list a component's tasks with parameter names, WIT
//! types and doc comments (when the component carries them), or (`--json`)
//! JSON Schemas of each task's kwargs, result and err value.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{CacheArgs, EXIT_BAD_INPUT};
use crate::sandbox::{Sandbox, docs, types};

pub(super) const AFTER_HELP: &str = "\
Examples:
  runner inspect hello.wasm
  runner inspect showcase.wasm --json | jq '.tasks[\"echo-point\"]'";

/// Arguments of `runner inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The component file (.wasm).
    pub module: PathBuf,
    /// Print JSON: per task, its WIT signature, its doc comment (`docs`; null
    /// when the component carries none) and JSON Schemas of its kwargs, its
    /// result (`ok` of a `result<T, E>` export: T, unwrapped, as replies and
    /// `runner call` give it) and its `err` value (`error`, what a reply
    /// carries as `error.value`; null when it cannot fail with one).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Runs `runner inspect`.
///
/// # Errors
///
/// Runner errors only; a module that does not load is exit code 2.
pub fn execute(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::new()?;
    let module = match args.cache.load(&sandbox, &args.module) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    // Only the doc comments need the bytes again; a file that changed since
    // it loaded just shows none.
    let docs = std::fs::read(&args.module)
        .map(|bytes| docs::export_docs(&bytes))
        .unwrap_or_default();
    if args.json {
        let mut tasks = serde_json::Map::new();
        for task in module.tasks() {
            let (result, error) = types::reply_schemas(task.result.as_ref());
            tasks.insert(
                task.name.clone(),
                serde_json::json!({
                    "interface": task.interface,
                    "signature": task.signature(),
                    "docs": docs.get(&task.name),
                    "kwargs": task.kwargs_schema(),
                    "result": result,
                    "error": error,
                }),
            );
        }
        let doc =
            serde_json::json!({ "module": args.module.display().to_string(), "tasks": tasks });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{}", args.module.display());
        for task in module.tasks() {
            println!("  {}: {}", task.name, task.signature());
            for line in docs.get(&task.name).into_iter().flat_map(|d| d.lines()) {
                println!("      {line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
