//! The key of an entry: what a module's compiled code depends on, hashed.

use std::fmt;
use std::hash::{Hash, Hasher};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;

/// The wasmtime release artifacts are made with: the exact pin in the
/// workspace manifest (a unit test below keeps the two in step). wasmtime
/// exports no version constant; its own version also reaches the key through
/// `Engine::precompile_compatibility_hash`, so this is a second guard.
const WASMTIME_VERSION: &str = "48.0.8";

/// Where a module's compiled code is found: a SHA-256 over its bytes, the
/// wasmtime version and the engine configuration, shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub(super) [u8; 32]);

impl CacheKey {
    /// The key of component bytes `wasm` compiled by `engine`.
    pub(super) fn derive(engine: &Engine, wasm: &[u8]) -> CacheKey {
        let mut key = Sha256::new();
        key.update(b"beanbox-code-cache\0");
        key.update(WASMTIME_VERSION.as_bytes());
        key.update(b"\0");
        key.update(engine_fingerprint(engine));
        key.update(Sha256::digest(wasm));
        CacheKey(key.finalize().into())
    }

    /// The key shown as `text` (64 lowercase hex digits, as in an entry's
    /// file name), if it is one.
    pub fn parse(text: &str) -> Option<CacheKey> {
        if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut key = [0; 32];
        for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(CacheKey(key))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

/// A SHA-256 over the engine's compatibility hash: what an artifact depends
/// on besides the module (target, compiler flags, tunables, wasm features,
/// wasmtime's version).
///
/// `Hash` output is only as stable as the `Hash` impls feeding it, which may
/// change with rustc or wasmtime; a change costs a recompile (a new key),
/// never a wrong hit, as wasmtime checks compatibility on load.
fn engine_fingerprint(engine: &Engine) -> [u8; 32] {
    let mut digest = Sha256::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut DigestHasher(&mut digest));
    digest.finalize().into()
}

/// Feeds what a `Hash` impl writes into a SHA-256, whose output, unlike
/// `DefaultHasher`'s, is fixed across Rust releases.
struct DigestHasher<'a>(&'a mut Sha256);

impl Hasher for DigestHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Never asked for by `Hash` impls: the digest is read by its owner.
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmtime_version_matches_the_workspace_pin() {
        let manifest = include_str!("../../../../Cargo.toml");
        let pin = format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"");
        assert!(
            manifest.contains(&pin),
            "update WASMTIME_VERSION with the wasmtime pin"
        );
    }

    #[test]
    fn a_key_reads_back_from_its_hex() {
        let key = CacheKey(std::array::from_fn(|i| (i * 37) as u8));
        assert_eq!(CacheKey::parse(&key.to_string()), Some(key));
        assert_eq!(CacheKey::parse("abc"), None);
        assert_eq!(CacheKey::parse(&"g".repeat(64)), None);
        assert_eq!(CacheKey::parse(&key.to_string().to_uppercase()), None);
    }
}
