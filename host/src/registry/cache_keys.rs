//! Which compiled-code cache entries the registry keeps: the versions loaded
//! now and the one each module had before.

use std::collections::{HashMap, HashSet};

use crate::sandbox::CacheKey;

/// The code cache keys of the versions loaded now and of the one each
/// module had before (also after it was removed): what pruning keeps.
#[derive(Debug, Default)]
pub(super) struct CacheKeys {
    current: HashMap<String, CacheKey>,
    previous: HashMap<String, CacheKey>,
}

impl CacheKeys {
    /// Records the keys of what is `loaded` now (by module name); returns
    /// the keys to keep.
    pub(super) fn update(&mut self, loaded: HashMap<String, CacheKey>) -> HashSet<CacheKey> {
        for (name, key) in self.current.drain() {
            if loaded.get(&name) != Some(&key) {
                self.previous.insert(name, key);
            }
        }
        self.current = loaded;
        self.current
            .values()
            .chain(self.previous.values())
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CacheKey {
        let text = format!("{byte:02x}").repeat(32);
        CacheKey::parse(&text).expect("64 hex digits")
    }

    #[test]
    fn the_cache_keeps_loaded_versions_and_one_previous_each() {
        let mut keys = CacheKeys::default();
        let loaded = |pairs: &[(&str, u8)]| {
            pairs
                .iter()
                .map(|(n, k)| (n.to_string(), key(*k)))
                .collect::<HashMap<_, _>>()
        };
        let set = |ks: &[u8]| ks.iter().map(|k| key(*k)).collect::<HashSet<_>>();
        assert_eq!(keys.update(loaded(&[("a", 1), ("b", 2)])), set(&[1, 2]));
        assert_eq!(keys.update(loaded(&[("a", 3), ("b", 2)])), set(&[1, 2, 3]));
        assert_eq!(
            keys.update(loaded(&[("a", 4), ("b", 2)])),
            set(&[2, 3, 4]),
            "a's 1 goes"
        );
        assert_eq!(
            keys.update(loaded(&[("a", 4)])),
            set(&[2, 3, 4]),
            "removed b: 2 kept"
        );
        assert_eq!(
            keys.update(loaded(&[("a", 3)])),
            set(&[2, 3, 4]),
            "a rolled back"
        );
    }
}
