//! beanbox: runs beanstalkd jobs inside WebAssembly component sandboxes.
//!
//! - [`sandbox`] compiles task components and calls their exports under
//!   limits; it knows nothing of beanstalkd.
//! - [`registry`] keeps the modules of a directory current (hot deploy).
//! - [`config`] says which tenant runs what, under which limits and grants.
//! - [`worker`] reserves jobs from beanstalkd and runs them in the sandbox.
//! - [`failures`] keeps why each buried job failed on beanstalkd.
//! - [`ops`] are the operator's actions (stats, buried, kick, delete,
//!   pause) shared by the admin CLI and the dashboard.
//! - [`metrics`] counts what the worker does; [`admin`] serves it (and the
//!   dashboard) over HTTP.
//! - [`commands`] are the `runner` subcommands.

pub mod admin;
pub mod commands;
pub mod config;
pub mod failures;
pub mod metrics;
pub mod ops;
pub mod registry;
pub mod sandbox;
pub mod worker;
