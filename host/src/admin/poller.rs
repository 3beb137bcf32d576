//! The admin poller: one task and one connection of its own per beanstalkd
//! server, each on its own schedule (a server down or slow delays no
//! other's counts), every second: `stats-tube` of each served tube (counts
//! for `beanbox_tube_jobs` and the dashboard, `cmd-delete` for the jobs/s
//! samples) and `beanbox_beanstalkd_up{server}`. A lost connection is
//! reopened at the next tick; the metrics are never fetched per scrape.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use beanbox_queue::{Client, TubeStats};

use crate::metrics::Metrics;
use crate::metrics::board::TubeCounts;

/// How often beanstalkd is polled.
pub const EVERY: Duration = Duration::from_secs(1);

/// The longest a connect or a `stats-tube` may take before beanstalkd
/// counts as unreachable.
const PATIENCE: Duration = Duration::from_secs(1);

/// Polls the server at `addr` every [`EVERY`] until the process ends.
pub async fn run(addr: String, metrics: Metrics) {
    let mut client: Option<Client> = None;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let up = poll(&mut client, &addr, &metrics).await;
        let was_up = metrics.beanstalkd_up(&addr);
        if !up && was_up {
            tracing::warn!(addr = %addr, "admin: beanstalkd unreachable");
        } else if up && !was_up {
            tracing::info!(addr = %addr, "admin: beanstalkd reachable");
        }
        metrics.set_beanstalkd_up(&addr, up);
        if !up {
            client = None;
        }
    }
}

/// One round: (re)connects when needed, then reads every served tube.
/// Whether beanstalkd answered.
async fn poll(client: &mut Option<Client>, addr: &str, metrics: &Metrics) -> bool {
    if client.is_none() {
        match tokio::time::timeout(PATIENCE, Client::connect(addr)).await {
            Ok(Ok(c)) => *client = Some(c),
            _ => return false,
        }
    }
    let Some(c) = client.as_mut() else {
        return false;
    };
    let tubes = metrics.served_tubes();
    if tubes.is_empty() {
        // Nothing to read; still prove the connection works.
        return matches!(
            tokio::time::timeout(PATIENCE, c.list_tube_used()).await,
            Ok(Ok(_))
        );
    }
    for tube in tubes {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match tokio::time::timeout(PATIENCE, c.stats_tube(&tube)).await {
            Ok(Ok(stats)) => {
                metrics.tube_polled(addr, &tube, counts(&stats), stats.cmd_delete, at);
            }
            // No job and no watcher yet: the tube does not exist.
            Ok(Err(e)) if e.is_not_found() => {
                metrics.tube_polled(addr, &tube, TubeCounts::default(), 0, at);
            }
            _ => return false,
        }
    }
    true
}

/// The counts the dashboard shows of a `stats-tube` reply.
fn counts(s: &TubeStats) -> TubeCounts {
    let left = u64::try_from(s.pause_time_left).unwrap_or(0);
    TubeCounts {
        ready: s.current_jobs_ready,
        reserved: s.current_jobs_reserved,
        delayed: s.current_jobs_delayed,
        buried: s.current_jobs_buried,
        paused: left > 0,
        pause_time_left: left,
    }
}
