//! What the admin poller records: each beanstalkd server up or down
//! (`beanbox_beanstalkd_up{server}`) and each served tube's counts per
//! server, summed into `beanbox_tube_jobs`.

use super::Metrics;
use super::board::TubeCounts;
use super::families::{ServerLabel, TUBE_STATES, TubeStateLabels};

impl Metrics {
    /// Sets whether the admin poller reaches the beanstalkd `server`
    /// (`beanbox_beanstalkd_up{server}`; the admin listener sets each
    /// configured server to 0 at start, so labels stay bounded). A server
    /// lost leaves the tube counts (and `beanbox_tube_jobs`' sums) until it
    /// answers again.
    pub fn set_beanstalkd_up(&self, server: &str, up: bool) {
        if !up {
            let tubes: Vec<(String, TubeCounts)> = {
                let mut board = self.board();
                for servers in board.tubes.values_mut() {
                    if let Some(entry) = servers.get_mut(server) {
                        entry.0 = None;
                    }
                }
                let names: Vec<String> = board.tubes.keys().cloned().collect();
                names
                    .into_iter()
                    .map(|t| {
                        let sum = board.tube_sum(&t);
                        (t, sum)
                    })
                    .collect()
            };
            for (tube, sum) in tubes {
                self.set_tube_gauges(&tube, &sum);
            }
        }
        // Last: whoever sees the server down sees its counts gone.
        self.inner
            .families
            .beanstalkd_up
            .get_or_create(&ServerLabel {
                server: server.to_string(),
            })
            .set(i64::from(up));
    }

    /// Whether the admin poller last reached the beanstalkd `server`
    /// (false before its first poll).
    pub fn beanstalkd_up(&self, server: &str) -> bool {
        let label = ServerLabel {
            server: server.to_string(),
        };
        self.inner
            .families
            .beanstalkd_up
            .get(&label)
            .is_some_and(|g| g.get() == 1)
    }

    /// Records a poll of a served tube on `server` at `at` (Unix seconds):
    /// its counts and the server's `cmd-delete` counter (for the rate).
    /// `beanbox_tube_jobs` is the sum over the servers.
    pub fn tube_polled(
        &self,
        server: &str,
        tube: &str,
        counts: TubeCounts,
        cmd_delete: u64,
        at: f64,
    ) {
        let sum = {
            let mut board = self.board();
            let servers = board.tubes.entry(tube.to_string()).or_default();
            let entry = servers.entry(server.to_string()).or_default();
            entry.0 = Some(counts);
            entry.1.sample(at, cmd_delete);
            board.tube_sum(tube)
        };
        self.set_tube_gauges(tube, &sum);
    }

    fn set_tube_gauges(&self, tube: &str, counts: &TubeCounts) {
        let counted = [counts.ready, counts.reserved, counts.delayed, counts.buried];
        for (state, n) in TUBE_STATES.into_iter().zip(counted) {
            self.inner
                .families
                .tube_jobs
                .get_or_create(&TubeStateLabels {
                    tube: tube.to_string(),
                    state,
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tube_counts_add_up_over_servers_and_a_lost_one_drops_out() {
        let m = Metrics::new();
        let buried = |n| TubeCounts {
            buried: n,
            ..TubeCounts::default()
        };
        m.set_beanstalkd_up("a:1", true);
        m.set_beanstalkd_up("b:2", true);
        m.tube_polled("a:1", "t", buried(2), 10, 1.0);
        m.tube_polled("b:2", "t", buried(3), 20, 1.0);
        let text = m.encode();
        assert!(
            text.contains(r#"beanbox_tube_jobs{tube="t",state="buried"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"beanbox_beanstalkd_up{server="b:2"} 1"#),
            "{text}"
        );
        let t = &m.board_snapshot().tubes["t"];
        assert_eq!(t.counts.map(|c| c.buried), Some(5));
        assert_eq!(t.servers["b:2"].buried, 3);

        m.set_beanstalkd_up("b:2", false);
        assert!(!m.beanstalkd_up("b:2") && m.beanstalkd_up("a:1"));
        assert!(!m.beanstalkd_up("never:1"), "not polled yet: down");
        let text = m.encode();
        assert!(
            text.contains(r#"beanbox_tube_jobs{tube="t",state="buried"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"beanbox_beanstalkd_up{server="b:2"} 0"#),
            "{text}"
        );
        let t = &m.board_snapshot().tubes["t"];
        assert_eq!(t.servers.keys().collect::<Vec<_>>(), ["a:1"]);
    }
}
