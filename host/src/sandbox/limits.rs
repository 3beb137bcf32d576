//! Per-call resource limits: the budget a module gets for one job, and the
//! store limiter that enforces its memory and table caps and remembers when
//! it refused, so an out-of-memory trap can be told apart from a panic.

use std::time::Duration;

/// Default fuel per call: about 0.2-2 s of guest CPU on this class of machine
/// (fuel counts wasm operations, 5e9-5e10 a second here).
pub const DEFAULT_FUEL: u64 = 10_000_000_000;
/// Default cap on a call's linear memory, summed over all its memories.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// Default wall-clock budget of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on captured stdout, separately on stderr, and on the bytes
/// of log lines.
pub const DEFAULT_OUTPUT_BYTES: usize = 1 << 20;
/// Default cap on table elements per table.
pub const DEFAULT_TABLE_ELEMENTS: usize = 100_000;
/// Default cap on log lines per call (their bytes count against
/// [`Limits::output_bytes`]).
pub const DEFAULT_LOG_LINES: u32 = 1_000;
/// Default cap on follow-up jobs one call may stage.
pub const DEFAULT_MAX_PUTS: u32 = 100;

/// The budget one call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wasm fuel (roughly: operations) the call may burn.
    pub fuel: u64,
    /// Bytes of linear memory the call may hold, over all its memories.
    pub memory_bytes: u64,
    /// Wall-clock time the call may take, start-up included.
    pub timeout: Duration,
    /// Bytes the call may write to stdout (and, separately, to stderr, and
    /// in log lines).
    pub output_bytes: usize,
    /// Elements any one table may grow to.
    pub table_elements: usize,
    /// Log lines the call may write (an empty one counts); its log messages
    /// may also take up to `output_bytes` bytes. Lines past either are
    /// dropped.
    pub log_lines: u32,
    /// Follow-up jobs the call may stage; further puts are refused.
    pub max_puts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            output_bytes: DEFAULT_OUTPUT_BYTES,
            table_elements: DEFAULT_TABLE_ELEMENTS,
            log_lines: DEFAULT_LOG_LINES,
            max_puts: DEFAULT_MAX_PUTS,
        }
    }
}

/// Enforces [`Limits::memory_bytes`] and [`Limits::table_elements`] for one
/// store, records a refusal and keeps the store's peak linear memory (every
/// memory's growth, its initial size included, passes through here).
///
/// A refused `memory.grow` returns -1 to the guest as the spec wants; a Rust
/// guest then aborts with the same `unreachable` trap as a panic, so the flag
/// is what tells the two apart afterwards.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_cap: u64,
    table_cap: usize,
    memory_total: u64,
    /// The most linear memory the store has held at once, in bytes.
    memory_peak: u64,
    pub(crate) memory_refused: bool,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            memory_cap: limits.memory_bytes,
            table_cap: limits.table_elements,
            memory_total: 0,
            memory_peak: 0,
            memory_refused: false,
        }
    }

    /// The most linear memory the store has held at once, over all its
    /// memories, in bytes. (Wasm memories never shrink, so for a kept
    /// instance this includes what earlier jobs grew.)
    pub(crate) fn memory_peak(&self) -> u64 {
        self.memory_peak
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = (desired - current) as u64;
        let within_max = maximum.is_none_or(|max| desired <= max);
        if !within_max || self.memory_total + growth > self.memory_cap {
            self.memory_refused = true;
            return Ok(false);
        }
        self.memory_total += growth;
        self.memory_peak = self.memory_peak.max(self.memory_total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_cap && maximum.is_none_or(|max| desired <= max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn the_peak_follows_granted_growth_only() {
        let mut limiter = Limiter::new(&Limits {
            memory_bytes: 4 << 16,
            ..Limits::default()
        });
        assert_eq!(limiter.memory_peak(), 0);
        assert!(limiter.memory_growing(0, 1 << 16, None).unwrap());
        assert!(limiter.memory_growing(1 << 16, 3 << 16, None).unwrap());
        assert_eq!(limiter.memory_peak(), 3 << 16);
        // Refused: past the cap; the peak stays.
        assert!(!limiter.memory_growing(3 << 16, 5 << 16, None).unwrap());
        assert!(limiter.memory_refused);
        assert_eq!(limiter.memory_peak(), 3 << 16);
        // A second memory adds to the same total.
        assert!(limiter.memory_growing(0, 1 << 16, None).unwrap());
        assert_eq!(limiter.memory_peak(), 4 << 16);
    }
}
