//! beanbox: runs beanstalkd jobs inside WebAssembly component sandboxes.
//!
//! - [`sandbox`] compiles task components and calls their exports under
//!   limits; it knows nothing of beanstalkd.
//! - [`worker`] reserves jobs from beanstalkd and runs them in the sandbox.
//! - [`commands`] are the `runner` subcommands.

pub mod commands;
pub mod sandbox;
pub mod worker;
