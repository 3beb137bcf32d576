//! Which server a [`MultiProducer`](crate::MultiProducer) puts a job on:
//! pure decisions, no I/O.
//!
//! - **Round-robin** (no key): the job after one placed on server `i`
//!   prefers server `i + 1`, then the ones after it in list order.
//! - **By key**: rendezvous (highest random weight) hashing. Every server
//!   gets a [`score`] for the key; the servers are tried from the highest
//!   score down. The score depends only on the server's address string and
//!   the key, never on the list's order or length, so adding a server to a
//!   list of `n` moves about `1/(n+1)` of the keys, all of them to the new
//!   server, and removing one moves only that server's keys.
//! - **Skipping**: a server that could not be reached is [skipped]
//!   for [`SKIP_FOR`]; it is tried only after every server that is not
//!   skipped, so a put still goes somewhere while one is left.
//!
//! # The score, for producers in other languages
//!
//! `score(addr, key)` is the 64-bit FNV-1a hash (offset basis
//! `0xcbf29ce484222325`, prime `0x100000001b3`) of the address's UTF-8
//! bytes, one `0xFF` byte (never part of UTF-8, so `"a"+"bc"` and
//! `"ab"+"c"` differ), then the key's UTF-8 bytes, passed through
//! splitmix64's finalizer (`z ^= z >> 30; z *= 0xbf58476d1ce4e5b9;
//! z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31`, wrapping
//! multiplication). Highest score first; equal scores (practically never)
//! by address, byte-wise ascending.

use std::time::{Duration, Instant};

/// How long a server that could not be reached is tried only after all
/// others.
pub const SKIP_FOR: Duration = Duration::from_secs(5);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a over `bytes`, continuing from `hash`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// 64-bit FNV-1a of `bytes`: a hash that is the same in every process and
/// every release (unlike std's), for anything that spreads by name.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, bytes)
}

/// splitmix64's finalizer: every input bit flips about half the output
/// bits, which FNV-1a alone does not do for its last bytes.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rendezvous score of server `addr` for `key` (see the module docs
/// for its exact definition).
pub fn score(addr: &str, key: &str) -> u64 {
    let hash = fnv1a(FNV_OFFSET, addr.as_bytes());
    let hash = fnv1a(hash, &[0xFF]);
    mix(fnv1a(hash, key.as_bytes()))
}

/// The indexes of `servers`, the one `key` prefers first: highest
/// [`score`] first, ties by address.
pub fn by_key(servers: &[String], key: &str) -> Vec<usize> {
    let mut ranked: Vec<(u64, usize)> = servers
        .iter()
        .enumerate()
        .map(|(i, addr)| (score(addr, key), i))
        .collect();
    ranked.sort_by(|(sa, a), (sb, b)| sb.cmp(sa).then_with(|| servers[*a].cmp(&servers[*b])));
    ranked.into_iter().map(|(_, i)| i).collect()
}

/// The indexes of `n` servers starting at `next % n`, in list order,
/// wrapping around.
pub fn round_robin(n: usize, next: usize) -> Vec<usize> {
    (0..n).map(|k| (next + k) % n).collect()
}

/// Whether a server that went down at `down_at` is still skipped at `now`.
pub fn skipped(down_at: Option<Instant>, now: Instant) -> bool {
    down_at.is_some_and(|at| now.saturating_duration_since(at) < SKIP_FOR)
}

/// The order to try servers in: `preference` with the skipped ones moved
/// to the end (each group keeps its order).
pub fn try_order(preference: Vec<usize>, is_skipped: impl Fn(usize) -> bool) -> Vec<usize> {
    let (mut up, down): (Vec<usize>, Vec<usize>) =
        preference.into_iter().partition(|&i| !is_skipped(i));
    up.extend(down);
    up
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:11300", i + 1)).collect()
    }

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn scores_are_fixed_vectors() {
        // A producer in another language must compute these same numbers.
        assert_eq!(score("127.0.0.1:11300", "user-42"), 0xcfb0_f760_6b0e_e13b);
        assert_eq!(score("127.0.0.1:11301", "user-42"), 0x28f9_fb82_b335_c0dc);
        assert_eq!(score("127.0.0.1:11300", ""), 0xb7ea_5b91_d6ea_cf6f);
        // The separator keeps address and key apart.
        assert_ne!(score("a", "bc"), score("ab", "c"));
    }

    #[test]
    fn a_key_ranks_servers_by_address_not_by_position() {
        let servers = list(3);
        let ranked = by_key(&servers, "user-42");
        let mut sorted = ranked.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2]);
        let mut reversed = servers.clone();
        reversed.reverse();
        let again: Vec<&String> = by_key(&reversed, "user-42")
            .into_iter()
            .map(|i| &reversed[i])
            .collect();
        let first: Vec<&String> = ranked.into_iter().map(|i| &servers[i]).collect();
        assert_eq!(first, again);
    }

    #[test]
    fn adding_a_server_moves_about_a_quarter_of_keys_all_to_it() {
        let (three, four) = (list(3), list(4));
        let mut moved = 0;
        for k in 0..10_000 {
            let key = format!("key-{k}");
            let before = &three[by_key(&three, &key)[0]];
            let after = &four[by_key(&four, &key)[0]];
            if before != after {
                assert_eq!(after, &four[3], "{key} moved between old servers");
                moved += 1;
            }
        }
        assert!((1_500..=3_500).contains(&moved), "{moved} of 10000 moved");
    }

    #[test]
    fn keys_spread_over_servers() {
        let servers = list(3);
        let mut counts = [0; 3];
        for k in 0..3_000 {
            counts[by_key(&servers, &format!("order-{k}"))[0]] += 1;
        }
        assert!(
            counts.iter().all(|&c| (600..=1_400).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn round_robin_wraps() {
        assert_eq!(round_robin(3, 0), [0, 1, 2]);
        assert_eq!(round_robin(3, 2), [2, 0, 1]);
        assert_eq!(round_robin(3, 7), [1, 2, 0]);
        assert_eq!(round_robin(1, 5), [0]);
    }

    #[test]
    fn a_down_server_is_skipped_for_a_while_then_tried_again() {
        let t0 = Instant::now();
        assert!(!skipped(None, t0));
        assert!(skipped(Some(t0), t0));
        assert!(skipped(Some(t0), t0 + SKIP_FOR - Duration::from_millis(1)));
        assert!(!skipped(Some(t0), t0 + SKIP_FOR));
        // A clock reading before `down_at` counts as still skipped.
        assert!(skipped(Some(t0 + Duration::from_secs(1)), t0));
    }

    #[test]
    fn skipped_servers_go_last_in_order() {
        assert_eq!(try_order(vec![2, 0, 1], |i| i == 0), [2, 1, 0]);
        assert_eq!(try_order(vec![2, 0, 1], |i| i != 1), [1, 2, 0]);
        assert_eq!(try_order(vec![2, 0, 1], |_| true), [2, 0, 1]);
        assert_eq!(try_order(vec![2, 0, 1], |_| false), [2, 0, 1]);
    }
}
