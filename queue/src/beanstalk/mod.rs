//! A tokio client for beanstalkd: the wire protocol ([`proto`]), the error
//! type that mirrors the server's replies ([`Error`]), typed stats
//! ([`JobStats`], [`TubeStats`]) and the connection ([`Client`]).

pub mod client;
pub mod error;
pub mod proto;
pub mod server_error;
pub mod stats;

pub use client::{Client, Job};
pub use error::{Error, Result};
pub use server_error::ServerError;
pub use stats::{JobState, JobStats, TubeStats};
