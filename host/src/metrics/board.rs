//! What the dashboard shows besides the Prometheus families, kept in
//! memory: what each tenant's jobs used, the last failed attempts, and each
//! served tube's counts with its "finished jobs/s" samples, per beanstalkd
//! server, and how those add up over the servers. Pure data and decisions;
//! [`super::Metrics`] holds them behind a lock.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Failed attempts kept for the dashboard.
pub const FAILURES_KEPT: usize = 100;

/// Seconds of rate samples kept per tube.
pub const RATE_WINDOW_SECS: u64 = 600;

/// The oldest a server's rate sample may be and still count in a sum (each
/// server is polled every second, on its own schedule).
pub const RATE_GAP_SECS: u64 = 2;

/// What one tenant's settled jobs used, summed since the worker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Jobs settled (deleted, released or buried).
    pub jobs: u64,
    /// Fuel burned, summed.
    pub fuel: u64,
    /// Wall-clock seconds of their calls, summed.
    pub seconds: f64,
    /// The largest peak linear memory of any one call.
    pub memory_peak_bytes: u64,
}

impl Usage {
    /// Adds one settled job.
    pub fn add(&mut self, fuel: u64, seconds: f64, memory_peak: u64) {
        self.jobs += 1;
        self.fuel = self.fuel.saturating_add(fuel);
        self.seconds += seconds;
        self.memory_peak_bytes = self.memory_peak_bytes.max(memory_peak);
    }
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedOutcome {
    /// It will be tried again.
    Released,
    /// It was given up on.
    Buried,
}

/// One failed attempt, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureEntry {
    /// The job id.
    pub job: u64,
    /// Its tube.
    pub tube: String,
    /// Its task (the metrics label: an export, or `unknown`).
    pub task: String,
    /// The tenant that ran it.
    pub tenant: String,
    /// Which attempt failed (0 when beanstalkd's statistics were lost).
    pub attempt: u32,
    /// The failure's kind, as in a reply (`guest-error`, `trap`, …).
    pub kind: String,
    /// Why, at most [`crate::failures::MAX_REASON_BYTES`].
    pub reason: String,
    /// When, in Unix seconds.
    pub at: u64,
    /// Released or buried.
    pub outcome: FailedOutcome,
}

/// The last `cap` items, oldest first.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    cap: usize,
    items: VecDeque<T>,
}

impl<T> Ring<T> {
    /// An empty ring keeping at most `cap` items.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            items: VecDeque::with_capacity(cap),
        }
    }

    /// Adds `item`, dropping the oldest when full.
    pub fn push(&mut self, item: T) {
        if self.cap == 0 {
            return;
        }
        if self.items.len() == self.cap {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// The items, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.items.iter()
    }
}

/// A tube's job counts, as `stats-tube` last told them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TubeCounts {
    /// Ready jobs.
    pub ready: u64,
    /// Reserved jobs.
    pub reserved: u64,
    /// Delayed jobs.
    pub delayed: u64,
    /// Buried jobs.
    pub buried: u64,
    /// Whether the tube is paused.
    pub paused: bool,
    /// Seconds until the pause ends.
    pub pause_time_left: u64,
}

impl TubeCounts {
    /// The counts of several servers added up: paused when paused on any,
    /// for the longest time left.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a TubeCounts>) -> TubeCounts {
        all.into_iter()
            .fold(TubeCounts::default(), |a, c| TubeCounts {
                ready: a.ready + c.ready,
                reserved: a.reserved + c.reserved,
                delayed: a.delayed + c.delayed,
                buried: a.buried + c.buried,
                paused: a.paused || c.paused,
                pause_time_left: a.pause_time_left.max(c.pause_time_left),
            })
    }
}

/// Several servers' `(Unix s, jobs/s)` samples as one series: at each
/// second any server has a sample, the sum of each server's latest sample
/// no older than [`RATE_GAP_SECS`]. One series stays as it is.
pub fn sum_rates(series: &[Vec<(u64, f64)>]) -> Vec<(u64, f64)> {
    if let [one] = series {
        return one.clone();
    }
    let mut seconds: Vec<u64> = series.iter().flatten().map(|(t, _)| *t).collect();
    seconds.sort_unstable();
    seconds.dedup();
    let mut next = vec![0usize; series.len()];
    seconds
        .into_iter()
        .map(|t| {
            let mut sum = 0.0;
            for (samples, i) in series.iter().zip(next.iter_mut()) {
                while *i < samples.len() && samples[*i].0 <= t {
                    *i += 1;
                }
                if let Some((at, rate)) = i.checked_sub(1).map(|j| samples[j])
                    && t - at <= RATE_GAP_SECS
                {
                    sum += rate;
                }
            }
            (t, (sum * 1000.0).round() / 1000.0)
        })
        .collect()
}

/// A tube's "finished jobs/s" samples, from the deltas of beanstalkd's
/// `cmd-delete` counter, over the last [`RATE_WINDOW_SECS`].
#[derive(Debug, Clone, Default)]
pub struct Rates {
    /// The previous reading: when (Unix seconds, fractional) and the counter.
    last: Option<(f64, u64)>,
    /// `(Unix s, jobs/s)`, oldest first.
    samples: VecDeque<(u64, f64)>,
}

impl Rates {
    /// Takes a reading of `cmd_delete` at `at` (Unix seconds): a sample of
    /// the rate since the previous reading. A counter that went down (a new
    /// beanstalkd) or a clock that did not advance gives no sample.
    pub fn sample(&mut self, at: f64, cmd_delete: u64) {
        if let Some((then, count)) = self.last
            && at > then
            && cmd_delete >= count
        {
            let rate = (cmd_delete - count) as f64 / (at - then);
            // Thousandths: the chart needs no more, the JSON stays short.
            self.samples
                .push_back((at as u64, (rate * 1000.0).round() / 1000.0));
        }
        self.last = Some((at, cmd_delete));
        let oldest = (at as u64).saturating_sub(RATE_WINDOW_SECS);
        while self.samples.front().is_some_and(|(t, _)| *t < oldest) {
            self.samples.pop_front();
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<(u64, f64)> {
        self.samples.iter().copied().collect()
    }
}

/// Everything the dashboard keeps, behind one lock in [`super::Metrics`].
#[derive(Debug)]
pub struct Board {
    /// Per tenant name.
    pub usage: BTreeMap<String, Usage>,
    /// The last failed attempts.
    pub failures: Ring<FailureEntry>,
    /// Per served tube, per server: its counts (once polled, while the
    /// server answers) and rates.
    pub tubes: BTreeMap<String, BTreeMap<String, (Option<TubeCounts>, Rates)>>,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            usage: BTreeMap::new(),
            failures: Ring::new(FAILURES_KEPT),
            tubes: BTreeMap::new(),
        }
    }
}

impl Board {
    /// Keeps only the tubes in `served` (a tube no longer served drops its
    /// samples).
    pub fn retain_tubes(&mut self, served: &[String]) {
        self.tubes.retain(|t, _| served.contains(t));
    }

    /// The counts of `tube` summed over the servers that answered.
    pub fn tube_sum(&self, tube: &str) -> TubeCounts {
        let servers = self.tubes.get(tube).into_iter().flat_map(|s| s.values());
        TubeCounts::sum(servers.filter_map(|(counts, _)| counts.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_sums_and_keeps_the_largest_peak() {
        let mut u = Usage::default();
        u.add(10, 0.5, 1 << 20);
        u.add(5, 0.25, 1 << 16);
        assert_eq!(
            u,
            Usage {
                jobs: 2,
                fuel: 15,
                seconds: 0.75,
                memory_peak_bytes: 1 << 20
            }
        );
        u.add(u64::MAX, 0.0, 0);
        assert_eq!(u.fuel, u64::MAX, "fuel saturates");
    }

    #[test]
    fn the_ring_keeps_the_last_items_oldest_first() {
        let mut ring = Ring::new(3);
        for i in 0..5 {
            ring.push(i);
        }
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [2, 3, 4]);
        let mut none = Ring::new(0);
        none.push(1);
        assert_eq!(none.iter().count(), 0);
    }

    #[test]
    fn rates_come_from_counter_deltas_and_skip_a_reset() {
        let mut r = Rates::default();
        r.sample(1000.0, 50);
        assert!(r.samples().is_empty(), "one reading is no rate");
        r.sample(1002.0, 60);
        assert_eq!(r.samples(), [(1002, 5.0)]);
        // A new beanstalkd starts from 0: no sample, and the next is from it.
        r.sample(1003.0, 2);
        assert_eq!(r.samples().len(), 1);
        r.sample(1004.0, 5);
        assert_eq!(r.samples(), [(1002, 5.0), (1004, 3.0)]);
        // The same instant again: no division by zero.
        r.sample(1004.0, 9);
        assert_eq!(r.samples().len(), 2);
    }

    #[test]
    fn counts_and_rates_add_up_over_servers() {
        let a = TubeCounts {
            ready: 2,
            buried: 1,
            ..TubeCounts::default()
        };
        let b = TubeCounts {
            ready: 3,
            paused: true,
            pause_time_left: 40,
            ..TubeCounts::default()
        };
        let sum = TubeCounts::sum([&a, &b]);
        assert_eq!((sum.ready, sum.buried, sum.pause_time_left), (5, 1, 40));
        assert!(sum.paused);
        assert_eq!(TubeCounts::sum([]), TubeCounts::default());

        let one = vec![(10, 1.0), (11, 2.0)];
        assert_eq!(sum_rates(std::slice::from_ref(&one)), one);
        // b skips second 12 (its poll fell in 13): its last sample still
        // counts there; a server silent for longer adds nothing.
        let a = vec![(10, 1.0), (11, 1.0), (12, 1.0), (13, 1.0), (20, 1.0)];
        let b = vec![(10, 2.0), (11, 2.0), (13, 2.0)];
        assert_eq!(
            sum_rates(&[a, b]),
            [(10, 3.0), (11, 3.0), (12, 3.0), (13, 3.0), (20, 1.0)]
        );
        assert!(sum_rates(&[]).is_empty());
    }

    #[test]
    fn rates_keep_ten_minutes() {
        let mut r = Rates::default();
        for s in 0..=700u64 {
            r.sample(s as f64, s);
        }
        let samples = r.samples();
        assert_eq!(samples.first().map(|s| s.0), Some(100));
        assert_eq!(samples.last(), Some(&(700, 1.0)));
    }
}
