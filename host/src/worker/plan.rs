//! Which server a slot asks for its next job: pure decisions, tested here;
//! `slot.rs` does the I/O around them.
//!
//! A tenant keeps its `concurrency` slots whatever the number of servers;
//! each slot has a connection per server and a *home* server, spread so
//! that with `concurrency ≥ servers` every server has a slot blocking on it
//! when idle (a job put there is picked up at once). To find a job a slot
//! asks the usable servers in turn with `reserve-with-timeout 0`, starting
//! after the server of its previous job, so a busy slot takes jobs from
//! every server in rotation and none is starved; if none had one it blocks
//! for a second on its home server (or the next usable one), then goes
//! round again. With fewer slots than servers an idle server's job may
//! wait up to about that second.

/// What a slot last heard from a server, where its next round starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Last {
    /// Nothing yet (a new slot, or one whose servers all went down): the
    /// others are asked before the server blocked on (home, if usable).
    Start,
    /// A job came from this server and it was not asked again since: the
    /// others are asked first, this one last.
    Served(usize),
    /// This server was just asked and had no job ready: the others are
    /// asked, not this one.
    Empty(usize),
}

/// One round of looking for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// Servers asked with `reserve-with-timeout 0`, in this order.
    pub(super) tries: Vec<usize>,
    /// The server then blocked on for a second; `None` when no server is
    /// usable (all are waiting out a reconnect backoff).
    pub(super) wait: Option<usize>,
}

/// The home server of slot `slot` of a tenant whose servers are offset by
/// `offset` ([`offset`]), among `servers`.
pub(super) fn home(slot: usize, offset: usize, servers: usize) -> usize {
    (slot + offset) % servers.max(1)
}

/// A tenant's offset: a stable hash of its name (FNV-1a), so that tenants
/// of one slot each do not all block on the first server.
pub(super) fn offset(tenant: &str) -> usize {
    let hash = beanbox_queue::placement::fnv1a_64(tenant.as_bytes());
    // The low bits spread over the (at most 64) servers.
    (hash % 64) as usize
}

/// The round after `last`: `up[s]` says whether server `s` may be asked now.
pub(super) fn reserve_plan(home: usize, last: Last, up: &[bool]) -> Plan {
    let n = up.len();
    let wait = wait_on(home, up);
    let (after, again) = match last {
        Last::Start => (wait.unwrap_or(home), true),
        Last::Served(s) => (s, true),
        Last::Empty(s) => (s, false),
    };
    let mut tries: Vec<usize> = (1..=n)
        .map(|k| (after + k) % n)
        .filter(|&s| up[s] && (again || s != after))
        .collect();
    // The blocking reserve asks the last one anyway (and returns a ready
    // job at once): one round trip fewer, and with one server exactly the
    // requests of a single connection.
    if tries.last().is_some() && tries.last().copied() == wait {
        tries.pop();
    }
    Plan { tries, wait }
}

/// The server a slot blocks on: home, or the next usable one after it.
pub(super) fn wait_on(home: usize, up: &[bool]) -> Option<usize> {
    let n = up.len();
    (0..n).map(|k| (home + k) % n).find(|&s| up[s])
}

/// Where the reserve that rides along with a finished job's delete goes:
/// the next server after the job's own, `from`, that may be asked now
/// (`up[s]`); the job's own when no other may (with one server: always, in
/// the delete's own write). Riding along keeps a busy slot going round
/// the servers, one round trip per job.
pub(super) fn ride_along(from: usize, up: &[bool]) -> usize {
    let n = up.len();
    (1..n)
        .map(|k| (from + k) % n)
        .find(|&s| up[s])
        .unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL3: [bool; 3] = [true, true, true];

    fn plan(tries: &[usize], wait: Option<usize>) -> Plan {
        Plan {
            tries: tries.to_vec(),
            wait,
        }
    }

    #[test]
    fn one_server_blocks_on_it_as_a_single_connection_would() {
        let up = [true];
        assert_eq!(reserve_plan(0, Last::Start, &up), plan(&[], Some(0)));
        assert_eq!(reserve_plan(0, Last::Served(0), &up), plan(&[], Some(0)));
        assert_eq!(reserve_plan(0, Last::Empty(0), &up), plan(&[], Some(0)));
        assert_eq!(ride_along(0, &up), 0);
    }

    #[test]
    fn one_server_down_leaves_nothing_to_ask() {
        assert_eq!(reserve_plan(0, Last::Start, &[false]), plan(&[], None));
        assert_eq!(
            reserve_plan(1, Last::Empty(2), &[false; 3]),
            plan(&[], None)
        );
    }

    #[test]
    fn a_new_slot_asks_the_others_then_blocks_at_home() {
        assert_eq!(reserve_plan(1, Last::Start, &ALL3), plan(&[2, 0], Some(1)));
        assert_eq!(reserve_plan(0, Last::Start, &ALL3), plan(&[1, 2], Some(0)));
    }

    #[test]
    fn after_a_job_the_others_come_first_and_its_server_last() {
        // Home 0, job from 1: 2, then 0, then 1 again; blocking on 0.
        assert_eq!(
            reserve_plan(0, Last::Served(1), &ALL3),
            plan(&[2, 0, 1], Some(0))
        );
        // Job from home: the others, then home by the blocking reserve.
        assert_eq!(
            reserve_plan(0, Last::Served(0), &ALL3),
            plan(&[1, 2], Some(0))
        );
    }

    #[test]
    fn a_server_just_found_empty_is_not_asked_again_in_the_round() {
        // The ride-along reserve on 2 found nothing: 0 and 1 in turn, and
        // 0 again by the blocking reserve when neither had one.
        assert_eq!(
            reserve_plan(0, Last::Empty(2), &ALL3),
            plan(&[0, 1], Some(0))
        );
        assert_eq!(reserve_plan(0, Last::Empty(1), &ALL3), plan(&[2], Some(0)));
        // An idle second on home: one quick look at each other server.
        assert_eq!(
            reserve_plan(0, Last::Empty(0), &ALL3),
            plan(&[1, 2], Some(0))
        );
    }

    #[test]
    fn down_servers_are_skipped_and_a_down_home_hands_the_wait_on() {
        let up = [false, true, true];
        assert_eq!(reserve_plan(0, Last::Start, &up), plan(&[2], Some(1)));
        assert_eq!(
            reserve_plan(0, Last::Served(2), &up),
            plan(&[1, 2], Some(1))
        );
        assert_eq!(reserve_plan(2, Last::Empty(2), &up), plan(&[1], Some(2)));
        assert_eq!(reserve_plan(0, Last::Empty(1), &up), plan(&[2], Some(1)));
        assert_eq!(wait_on(0, &[false, false, true]), Some(2));
        assert_eq!(wait_on(2, &[true, false, false]), Some(0));
    }

    /// A slot whose every job comes from the plan (none rides along, e.g.
    /// each is released) still visits every loaded server in turn.
    #[test]
    fn a_busy_slot_visits_every_server() {
        for home in 0..3 {
            let mut last = Last::Start;
            let mut served = Vec::new();
            for _ in 0..9 {
                // Every server has jobs: the first asked gives one.
                let p = reserve_plan(home, last, &ALL3);
                let s = p.tries.first().copied().or(p.wait).unwrap();
                served.push(s);
                last = Last::Served(s);
            }
            for s in 0..3 {
                assert_eq!(
                    served.iter().filter(|&&x| x == s).count(),
                    3,
                    "home {home}: {served:?}"
                );
            }
        }
    }

    #[test]
    fn riding_along_goes_round_the_usable_servers() {
        assert_eq!(ride_along(0, &ALL3), 1);
        assert_eq!(ride_along(2, &ALL3), 0);
        assert_eq!(ride_along(0, &[true, false, true]), 2);
        assert_eq!(ride_along(1, &[false, true, false]), 1);
    }

    #[test]
    fn slots_spread_over_servers_from_each_tenants_offset() {
        let homes: Vec<usize> = (0..3).map(|slot| home(slot, 5, 3)).collect();
        assert_eq!(homes, [2, 0, 1]);
        assert_eq!(home(7, offset("anything"), 1), 0);
        assert_eq!(offset("images"), offset("images"));
        // Tenants of one slot each land on different servers (not all on 0).
        let spread: std::collections::BTreeSet<usize> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|t| home(0, offset(t), 3))
            .collect();
        assert!(spread.len() > 1, "{spread:?}");
    }
}
