//! Log lines from a task.
//!
//! Each line appears in the worker's log tagged with the job id, tube and
//! task, at the level given. Use the functions here for plain strings and the
//! crate's macros ([`info!`](crate::info) and friends) to format:
//!
//! ```no_run
//! beanbox_sdk::log::info("resizing");
//! let width = 640;
//! beanbox_sdk::info!("resized to {width} px");
//! ```
//!
//! Writing to stdout or stderr also works, but the worker may cap or drop
//! that output; these lines are the task's log.
//!
//! A message longer than 4096 bytes is cut. A job may log 1,000 lines (an
//! empty one counts) and as many bytes as its output cap (default 1 MiB);
//! further lines are dropped, and the job's log line says how many.

use crate::wit::beanbox::task::log as wit;

/// How important a log line is, lowest first.
pub use wit::Level;

/// Writes one log line at `level`.
///
/// ```no_run
/// use beanbox_sdk::log::{self, Level};
///
/// log::log(Level::Warn, "input had no alpha channel; assuming opaque");
/// ```
pub fn log(level: Level, message: &str) {
    wit::log(level, message);
}

/// Writes a log line at [`Level::Trace`].
///
/// ```no_run
/// beanbox_sdk::log::trace("entering the resize loop");
/// ```
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes a log line at [`Level::Debug`].
///
/// ```no_run
/// beanbox_sdk::log::debug("cache miss");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes a log line at [`Level::Info`].
///
/// ```no_run
/// beanbox_sdk::log::info("task_one joining 3 strings");
/// ```
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes a log line at [`Level::Warn`].
///
/// ```no_run
/// beanbox_sdk::log::warn("retrying with a smaller batch");
/// ```
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes a log line at [`Level::Error`].
///
/// ```no_run
/// beanbox_sdk::log::error("upstream answered 503");
/// ```
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Formats and writes a log line at [`Level::Trace`](crate::log::Level::Trace).
///
/// ```no_run
/// let step = 3;
/// beanbox_sdk::trace!("step {step}");
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::trace(&::std::format!($($arg)+))
    };
}

/// Formats and writes a log line at [`Level::Debug`](crate::log::Level::Debug).
///
/// ```no_run
/// let key = "thumbs/42";
/// beanbox_sdk::debug!("cache miss for {key}");
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::debug(&::std::format!($($arg)+))
    };
}

/// Formats and writes a log line at [`Level::Info`](crate::log::Level::Info).
///
/// ```no_run
/// let n = 3;
/// beanbox_sdk::info!("task_one joining {n} strings");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::info(&::std::format!($($arg)+))
    };
}

/// Formats and writes a log line at [`Level::Warn`](crate::log::Level::Warn).
///
/// ```no_run
/// let attempt = beanbox_sdk::job::info().attempt;
/// beanbox_sdk::warn!("attempt {attempt}: retrying with a smaller batch");
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::warn(&::std::format!($($arg)+))
    };
}

/// Formats and writes a log line at [`Level::Error`](crate::log::Level::Error).
///
/// ```no_run
/// let status = 503;
/// beanbox_sdk::error!("upstream answered {status}");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::error(&::std::format!($($arg)+))
    };
}
