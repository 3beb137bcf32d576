//! The guest SDK for beanbox task components.
//!
//! A beanbox worker runs each beanstalkd job by calling one export of a
//! WebAssembly component: the export named by the job's `task`, with the
//! job's JSON `kwargs` converted to the export's typed WIT parameters. This
//! crate gives such a component what the host offers it (the WIT package
//! `beanbox:task@0.1.0`):
//!
//! - [`log`]: log lines that land in the worker's log, tagged with the job
//!   (also as the format macros [`trace!`], [`debug!`], [`info!`], [`warn!`],
//!   [`error!`]);
//! - [`job`]: facts about the job being served ([`job::info`]);
//! - [`queue`]: putting follow-up jobs ([`queue::put`]).
//!
//! The component runs in a sandbox: fuel, memory and wall-clock limits, and
//! WASI with nothing granted (no files, no environment, no network). A panic
//! or trap fails the job; an export returning `result::err` fails it as a
//! task error.
//!
//! # Writing a task
//!
//! A task crate is a `cdylib` that depends on this crate alone and whose WIT
//! world declares only its exports: the `beanbox:task` imports come with the
//! SDK (it holds its own copy of the WIT package, `wit/task.wit`, and its
//! bindings carry the import types into the component).
//!
//! ```text
//! my-task/
//! ├── Cargo.toml
//! ├── src/lib.rs
//! └── wit/
//!     └── world.wit
//! ```
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "my-task"          # the component is my_task.wasm
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! beanbox-sdk = { path = "../beanbox/guest-sdk" }
//!
//! [profile.release]         # ~50-80 KB instead of ~2.5 MB
//! lto = true
//! codegen-units = 1
//! opt-level = "s"
//! strip = "debuginfo"
//! ```
//!
//! `wit/world.wit` (every export is a task a job can name; kebab-case WIT
//! names are called as `task_one` or `task-one`):
//!
//! ```wit
//! package my:task;
//!
//! world my-task {
//!     /// Joins three strings.
//!     export task-one: func(arg1: string, arg2: string, arg3: string) -> string;
//! }
//! ```
//!
//! `src/lib.rs`: generate the bindings of your world with [`generate!`]
//! (`wit_bindgen::generate!` with this crate's runtime, so you need no
//! `wit-bindgen` dependency of your own), implement the generated `Guest`
//! trait and `export!` it:
//!
//! ```ignore
//! beanbox_sdk::generate!("my-task");
//!
//! struct MyTask;
//!
//! impl Guest for MyTask {
//!     fn task_one(arg1: String, arg2: String, arg3: String) -> String {
//!         beanbox_sdk::info!("job {} joining 3 strings", beanbox_sdk::job::info().id);
//!         arg1 + &arg2 + &arg3
//!     }
//! }
//!
//! export!(MyTask);
//! ```
//!
//! A world that includes `beanbox:task/imports@0.1.0` itself (with a copy of
//! the WIT in `wit/deps/`) points those interfaces at this crate's bindings:
//!
//! ```ignore
//! beanbox_sdk::generate!({
//!     world: "my-task",
//!     with: {
//!         "beanbox:task/log@0.1.0": beanbox_sdk::wit::beanbox::task::log,
//!         "beanbox:task/job@0.1.0": beanbox_sdk::wit::beanbox::task::job,
//!         "beanbox:task/queue@0.1.0": beanbox_sdk::wit::beanbox::task::queue,
//!     },
//! });
//! ```
//!
//! Build the component (`cargo` with rustup's `wasm32-wasip2` target emits
//! a component directly; `rustup target add wasm32-wasip2` once):
//!
//! ```text
//! cargo build --target wasm32-wasip2 --release
//! # -> target/wasm32-wasip2/release/my_task.wasm
//! ```
//!
//! Look at it and call it with beanbox's runner, outside any queue:
//!
//! ```text
//! runner inspect target/wasm32-wasip2/release/my_task.wasm
//! runner call target/wasm32-wasip2/release/my_task.wasm task_one \
//!     --kwargs '{"arg1":"a","arg2":"b","arg3":"c"}'
//! ```
//!
//! A producer then queues it as `{"task": "task_one", "kwargs": {...}}`.
//!
//! Exports may also sit in an exported interface (`export math;` with
//! `interface math { add: func(a: s64, b: s64) -> s64; }`); the worker then
//! knows them by the instance name, e.g. `my:task/math`.
#![deny(missing_docs)]

/// The `wit-bindgen` this SDK is built with; generate your task's bindings
/// with `beanbox_sdk::wit_bindgen::generate!` and
/// `runtime_path: "beanbox_sdk::wit_bindgen::rt"`.
pub use wit_bindgen;

pub mod job;
pub mod log;
pub mod queue;

/// Generates the bindings of a task's WIT world: `wit_bindgen::generate!`
/// with the runtime of this SDK's [`wit_bindgen`], so a task crate needs no
/// `wit-bindgen` dependency of its own.
///
/// `beanbox_sdk::generate!("my-task")` reads the world `my-task` from the
/// crate's `wit/` directory; `beanbox_sdk::generate!({ world: "my-task", ... })`
/// passes further `wit_bindgen::generate!` options through.
///
/// The world declares only the task's exports: the `beanbox:task` imports
/// come with this crate (its own copy of the WIT package, `wit/task.wit`, whose
/// type information its bindings embed in every component that uses them).
#[macro_export]
macro_rules! generate {
    ($world:literal) => {
        $crate::generate!({ world: $world });
    };
    ({ $($option:tt)* }) => {
        $crate::wit_bindgen::generate!({
            runtime_path: "beanbox_sdk::wit_bindgen::rt",
            $($option)*
        });
    };
}

/// Generated bindings of the world `beanbox:task/imports@0.1.0`.
///
/// Not for direct use: call the wrappers in [`log`], [`job`] and [`queue`].
/// (A task world that still includes `beanbox:task/imports@0.1.0` points its
/// `with` entries here.)
#[doc(hidden)]
#[allow(missing_docs, missing_debug_implementations)]
pub mod wit {
    // The SDK's own copy of the WIT package (the repository's `wit/` is a
    // symlink to it), so the crate builds on its own.
    wit_bindgen::generate!({
        world: "imports",
        path: "wit",
    });
}
