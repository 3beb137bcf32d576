//! Per-call budgets of what a task hands the host: log lines (count and
//! bytes), staged follow-up puts and captured output. Reaching one never
//! fails the call by itself (except output, see [`Budget::Stdout`]): what
//! goes past it is dropped or refused, and the call's outcome says so.
//!
//! The accounting here is pure; the imports in `host.rs` apply it.

use std::fmt;

/// The longest log line kept, in bytes; the rest of a longer message is cut
/// before anything else is done with it.
pub const MAX_LOG_LINE: usize = 4096;

/// What a cut log line ends with.
pub(crate) const TRUNCATED: &str = " [truncated]";

/// A kind of per-call budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Budget {
    /// Log lines a call may write ([`Limits::log_lines`](super::Limits)); an
    /// empty message costs a line too. Further lines are dropped.
    LogLines,
    /// Bytes of log messages a call may write
    /// ([`Limits::output_bytes`](super::Limits)). The line that crosses it is
    /// cut, further ones are dropped.
    LogBytes,
    /// Follow-up jobs a call may stage ([`Limits::max_puts`](super::Limits)).
    /// Further puts are refused with `denied`.
    Puts,
    /// Bytes the guest may write to stdout; reaching it fails the call with
    /// an output error.
    Stdout,
    /// The same for stderr.
    Stderr,
}

impl Budget {
    /// A short machine-readable name: `log-lines`, `log-bytes`, `puts`,
    /// `stdout`, `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Budget::LogLines => "log-lines",
            Budget::LogBytes => "log-bytes",
            Budget::Puts => "puts",
            Budget::Stdout => "stdout",
            Budget::Stderr => "stderr",
        }
    }
}

/// A budget a call reached, with what went past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetHit {
    /// Which budget.
    pub budget: Budget,
    /// Its limit: lines, bytes or puts.
    pub limit: u64,
    /// What was refused past it: log lines dropped, puts refused; 0 for
    /// output (the call failed at the cap) and for a log line only cut.
    pub refused: u64,
}

impl fmt::Display for BudgetHit {
    /// E.g. `log budget of 1000 lines exceeded (5 lines dropped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (limit, refused) = (self.limit, self.refused);
        match self.budget {
            Budget::LogLines => write!(
                f,
                "log budget of {limit} lines exceeded ({refused} lines dropped)"
            ),
            Budget::LogBytes => write!(
                f,
                "log budget of {limit} bytes exceeded ({refused} lines dropped)"
            ),
            Budget::Puts => write!(
                f,
                "put budget of {limit} follow-up jobs exceeded ({refused} puts refused)"
            ),
            Budget::Stdout | Budget::Stderr => {
                write!(f, "{} budget of {limit} bytes exceeded", self.budget.name())
            }
        }
    }
}

/// What to do with one log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogAdmit {
    /// Drop it: a budget is spent.
    Drop,
    /// Log its first `keep` bytes (at most [`MAX_LOG_LINE`]; round down to a
    /// char boundary), followed by [`TRUNCATED`] when `cut`.
    Keep {
        /// Bytes of the message kept.
        keep: usize,
        /// Whether the message was longer.
        cut: bool,
    },
}

/// The log and put budgets of one call, and what went past them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budgets {
    max_lines: u64,
    max_bytes: u64,
    max_puts: u64,
    lines: u64,
    bytes: u64,
    puts: u64,
    dropped_for_lines: u64,
    dropped_for_bytes: u64,
    cut_for_bytes: bool,
    refused_puts: u64,
}

impl Budgets {
    /// Fresh budgets: `lines` log lines, `bytes` log bytes, `puts` puts.
    pub(crate) fn new(lines: u32, bytes: usize, puts: u32) -> Self {
        Self {
            max_lines: lines.into(),
            max_bytes: bytes as u64,
            max_puts: puts.into(),
            lines: 0,
            bytes: 0,
            puts: 0,
            dropped_for_lines: 0,
            dropped_for_bytes: 0,
            cut_for_bytes: false,
            refused_puts: 0,
        }
    }

    /// Accounts for a log message of `len` bytes and says what to keep. A
    /// message costs a line, and the bytes kept (marker included) from the
    /// byte budget; a message longer than [`MAX_LOG_LINE`] or than the bytes
    /// left is cut.
    pub(crate) fn admit_log(&mut self, len: usize) -> LogAdmit {
        if self.lines >= self.max_lines {
            self.dropped_for_lines += 1;
            return LogAdmit::Drop;
        }
        let left = self.max_bytes - self.bytes;
        if left == 0 && len > 0 {
            self.dropped_for_bytes += 1;
            return LogAdmit::Drop;
        }
        let room = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(MAX_LOG_LINE);
        let admit = if len <= room {
            LogAdmit::Keep {
                keep: len,
                cut: false,
            }
        } else {
            if room < MAX_LOG_LINE {
                self.cut_for_bytes = true;
            }
            LogAdmit::Keep {
                keep: room,
                cut: true,
            }
        };
        self.lines += 1;
        if let LogAdmit::Keep { keep, cut } = admit {
            let cost = keep + if cut { TRUNCATED.len() } else { 0 };
            self.bytes = (self.bytes + cost as u64).min(self.max_bytes);
        }
        admit
    }

    /// Accounts for a put about to be staged: its number (1, 2, ...), or
    /// `None` when the put budget is spent (the refusal is counted).
    pub(crate) fn admit_put(&mut self) -> Option<u64> {
        if self.puts >= self.max_puts {
            self.refused_puts += 1;
            return None;
        }
        self.puts += 1;
        Some(self.puts)
    }

    /// The put budget.
    pub(crate) fn max_puts(&self) -> u64 {
        self.max_puts
    }

    /// The budgets reached so far.
    pub(crate) fn hits(&self) -> Vec<BudgetHit> {
        let mut hits = Vec::new();
        if self.dropped_for_lines > 0 {
            hits.push(BudgetHit {
                budget: Budget::LogLines,
                limit: self.max_lines,
                refused: self.dropped_for_lines,
            });
        }
        if self.dropped_for_bytes > 0 || self.cut_for_bytes {
            hits.push(BudgetHit {
                budget: Budget::LogBytes,
                limit: self.max_bytes,
                refused: self.dropped_for_bytes,
            });
        }
        if self.refused_puts > 0 {
            hits.push(BudgetHit {
                budget: Budget::Puts,
                limit: self.max_puts,
                refused: self.refused_puts,
            });
        }
        hits
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char
/// boundary.
pub(crate) fn prefix(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(keep: usize) -> LogAdmit {
        LogAdmit::Keep { keep, cut: false }
    }

    fn cut(keep: usize) -> LogAdmit {
        LogAdmit::Keep { keep, cut: true }
    }

    #[test]
    fn empty_messages_cost_a_line_each() {
        let mut b = Budgets::new(3, 1000, 0);
        for _ in 0..3 {
            assert_eq!(b.admit_log(0), keep(0));
        }
        assert_eq!(b.admit_log(0), LogAdmit::Drop);
        assert_eq!(b.admit_log(5), LogAdmit::Drop);
        assert_eq!(
            b.hits(),
            [BudgetHit {
                budget: Budget::LogLines,
                limit: 3,
                refused: 2
            }]
        );
    }

    #[test]
    fn within_both_budgets_nothing_is_hit() {
        let mut b = Budgets::new(10, 100, 2);
        assert_eq!(b.admit_log(40), keep(40));
        assert_eq!(b.admit_log(60), keep(60));
        assert_eq!(b.admit_put(), Some(1));
        assert_eq!(b.admit_put(), Some(2));
        assert!(b.hits().is_empty(), "{:?}", b.hits());
    }

    #[test]
    fn the_line_crossing_the_byte_budget_is_cut_and_later_ones_dropped() {
        let mut b = Budgets::new(1000, 100, 0);
        assert_eq!(b.admit_log(90), keep(90));
        assert_eq!(b.admit_log(50), cut(10));
        assert_eq!(b.admit_log(1), LogAdmit::Drop);
        assert_eq!(b.admit_log(7), LogAdmit::Drop);
        // An empty line still fits while lines are left: it costs no bytes.
        assert_eq!(b.admit_log(0), keep(0));
        assert_eq!(
            b.hits(),
            [BudgetHit {
                budget: Budget::LogBytes,
                limit: 100,
                refused: 2
            }]
        );
    }

    #[test]
    fn a_long_line_is_cut_to_the_line_cap_without_hitting_a_budget() {
        let mut b = Budgets::new(10, 1 << 20, 0);
        assert_eq!(b.admit_log(60 << 20), cut(MAX_LOG_LINE));
        assert!(b.hits().is_empty(), "{:?}", b.hits());
        // It cost the cap and the marker.
        assert_eq!(b.bytes, (MAX_LOG_LINE + TRUNCATED.len()) as u64);
    }

    #[test]
    fn puts_past_the_budget_are_refused_and_counted() {
        let mut b = Budgets::new(0, 0, 2);
        assert_eq!(b.admit_put(), Some(1));
        assert_eq!(b.admit_put(), Some(2));
        assert_eq!(b.admit_put(), None);
        assert_eq!(b.admit_put(), None);
        assert_eq!(
            b.hits(),
            [BudgetHit {
                budget: Budget::Puts,
                limit: 2,
                refused: 2
            }]
        );
        assert_eq!(
            b.hits()[0].to_string(),
            "put budget of 2 follow-up jobs exceeded (2 puts refused)"
        );
    }

    #[test]
    fn prefix_ends_on_a_char_boundary() {
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("héllo", 3), "hé");
        assert_eq!(prefix("abc", 10), "abc");
    }
}
