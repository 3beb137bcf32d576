//! The compiled-code cache: a component compiled once is kept on disk as a
//! checksummed wasmtime artifact, keyed by its bytes, the wasmtime version
//! and the engine configuration, so a restart deserializes it instead of
//! compiling it again. An entry that fails any check is recompiled and
//! replaced, never trusted.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::{LoadError, Module, Sandbox, one_line};

/// The wasmtime release artifacts are made with: the exact pin in the
/// workspace manifest (a unit test below keeps the two in step). wasmtime
/// exports no version constant; its own version also reaches the key through
/// `Engine::precompile_compatibility_hash`, so this is a second guard.
const WASMTIME_VERSION: &str = "48.0.8";

/// The first bytes of every entry.
const MAGIC: &[u8; 8] = b"BBXCWASM";

/// The layout of the header below; bumped when it changes, and an entry of
/// another format is replaced.
const FORMAT: u32 = 1;

/// Header: magic, format (u32 LE), the entry's key, payload length (u64 LE),
/// SHA-256 of the payload. The payload (the wasmtime artifact) follows.
const HEADER_LEN: usize = MAGIC.len() + 4 + 32 + 8 + 32;

/// Entry files are `<key>.cwasm`; files being written are `.tmp-*`.
const EXTENSION: &str = "cwasm";

/// Names temporary files uniquely among the threads of this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where a module's compiled code is found: a SHA-256 over its bytes, the
/// wasmtime version and the engine configuration, shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

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

/// How [`Sandbox::load_file_cached`] got its module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from a valid entry; nothing was compiled.
    Hit,
    /// No entry: compiled, and an entry written.
    Compiled,
    /// An entry existed but was corrupt, truncated or from an incompatible
    /// engine: compiled, and the entry replaced.
    Replaced,
}

/// A directory of compiled components.
///
/// Entries are native code that is run without further checks beyond a
/// checksum and wasmtime's compatibility test, so the directory must be as
/// trusted as the `runner` binary: [`CodeCache::new`] creates it private to
/// its owner and refuses one that other users can write to.
#[derive(Debug)]
pub struct CodeCache {
    dir: PathBuf,
    compilations: AtomicU64,
}

/// What the cache holds under a key.
enum Lookup {
    Missing,
    /// A whole entry whose header and checksum are valid.
    Found(Vec<u8>),
    /// An entry that must not be trusted, and why.
    Invalid(String),
}

impl CodeCache {
    /// Opens the cache in `dir`, creating it (owner-only on Unix) if needed.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created, or (on Unix) other users may
    /// write to it; the message names the directory.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        let fail = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot use code cache directory {}: {e}", dir.display()),
            )
        };
        create_private_dir(&dir).map_err(fail)?;
        check_not_shared(&dir).map_err(fail)?;
        Ok(Self {
            dir,
            compilations: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many components loads through this cache have compiled (rather
    /// than deserialized), failed compilations included.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// The key of component bytes `wasm` compiled by `engine`.
    pub fn key(engine: &Engine, wasm: &[u8]) -> CacheKey {
        let mut key = Sha256::new();
        key.update(b"beanbox-code-cache\0");
        key.update(WASMTIME_VERSION.as_bytes());
        key.update(b"\0");
        key.update(engine_fingerprint(engine));
        key.update(Sha256::digest(wasm));
        CacheKey(key.finalize().into())
    }

    /// The file that holds (or would hold) the entry for `key`.
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.{EXTENSION}"))
    }

    /// Writes `artifact` (from [`Engine::precompile_component`] or
    /// [`Component::serialize`]) as the entry for `key`, atomically: a
    /// reader sees the old entry or the new one, never half of it.
    ///
    /// Loading an entry checks its checksum and lets wasmtime refuse an
    /// artifact from another engine, but cannot tell an artifact of another
    /// module: store only what was compiled from the bytes of `key`.
    ///
    /// # Errors
    ///
    /// When the entry cannot be written; no partial entry is left behind.
    pub fn store(&self, key: &CacheKey, artifact: &[u8]) -> io::Result<()> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".tmp-{key}-{}-{n}", std::process::id()));
        // No fsync: an entry torn by a crash fails its checksum and is
        // replaced, which is all a cache needs.
        let written = write_entry(&temp, key, artifact)
            .and_then(|()| fs::rename(&temp, self.entry_path(key)));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Reads the entry for `key` and checks its header and checksum.
    fn lookup(&self, key: &CacheKey) -> Lookup {
        let data = match fs::read(self.entry_path(key)) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Missing,
            Err(e) => return Lookup::Invalid(format!("cannot read it: {e}")),
        };
        match check_entry(&data, key) {
            Ok(()) => Lookup::Found(data),
            Err(reason) => Lookup::Invalid(reason),
        }
    }
}

impl Sandbox {
    /// Loads the component at `path`, through `cache` when there is one
    /// ([`Sandbox::load_file_cached`]), else by compiling it.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load_file`].
    pub fn load_file_through(
        &self,
        path: &Path,
        cache: Option<&CodeCache>,
    ) -> Result<Module, LoadError> {
        match cache {
            Some(cache) => self.load_file_cached(path, cache).map(|(m, _)| m),
            None => self.load_file(path),
        }
    }

    /// Loads the component at `path` through `cache`: deserializes its
    /// compiled code when a valid entry exists, else compiles it and stores
    /// the entry. Either way the module is then checked and pre-linked as by
    /// [`Sandbox::load_file`].
    ///
    /// A cache that cannot be written only costs the next start a compile:
    /// it is logged, not returned.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load_file`]; a bad cache entry is never an error.
    pub fn load_file_cached(
        &self,
        path: &Path,
        cache: &CodeCache,
    ) -> Result<(Module, CacheOutcome), LoadError> {
        let name = path.display().to_string();
        let wasm = super::read_module(path, self.max_module_bytes)?;
        let started = Instant::now();
        let key = CodeCache::key(&self.engine, &wasm);
        let distrusted = match cache.lookup(&key) {
            Lookup::Missing => None,
            Lookup::Invalid(reason) => Some(reason),
            Lookup::Found(entry) => match deserialize(&self.engine, &entry[HEADER_LEN..]) {
                Ok(component) => {
                    let module = self.prepare(component, &name)?;
                    tracing::info!(
                        module = %name,
                        %key,
                        ms = millis_since(started),
                        "module loaded from cache"
                    );
                    return Ok((module, CacheOutcome::Hit));
                }
                Err(e) => Some(format!(
                    "wasmtime refused it: {}",
                    one_line(&format!("{e:#}"))
                )),
            },
        };

        let compiled = self.compile(&wasm, &name);
        cache.compilations.fetch_add(1, Ordering::Relaxed);
        let component = compiled?;
        let module = self.prepare(component.clone(), &name)?;
        let stored = component
            .serialize()
            .map_err(|e| io::Error::other(one_line(&format!("{e:#}"))))
            .and_then(|artifact| cache.store(&key, &artifact));
        if let Err(e) = stored {
            tracing::warn!(
                module = %name,
                %key,
                dir = %cache.dir.display(),
                "cannot write code cache entry: {e}"
            );
        }
        let ms = millis_since(started);
        let outcome = match distrusted {
            None => {
                tracing::info!(module = %name, %key, ms, "module compiled");
                CacheOutcome::Compiled
            }
            Some(reason) => {
                tracing::warn!(
                    module = %name,
                    %key,
                    ms,
                    reason,
                    "cache entry corrupt; recompiled"
                );
                CacheOutcome::Replaced
            }
        };
        Ok((module, outcome))
    }
}

/// Milliseconds since `start`, to the microsecond, for log lines.
fn millis_since(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Turns the payload of a checked entry back into a component.
#[expect(
    unsafe_code,
    reason = "wasmtime deserializes compiled code without validating it"
)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` must only see bytes produced by
    // wasmtime's own `Component::serialize`/`precompile_component`. These
    // come from an entry in our cache directory, which `CodeCache::new`
    // makes private to this user, and which only `CodeCache::store` writes
    // from such output; the SHA-256 in the header has just been checked
    // against the payload, so a truncated, torn or bit-flipped file never
    // gets here. An artifact from another wasmtime version or an engine
    // configured differently is refused by wasmtime itself with an error.
    unsafe { Component::deserialize(engine, artifact) }
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

/// Writes a header for `key` and `artifact`, then `artifact`, to a new file.
fn write_entry(path: &Path, key: &CacheKey, artifact: &[u8]) -> io::Result<()> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(&key.0);
    header.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    header.extend_from_slice(&Sha256::digest(artifact));
    debug_assert_eq!(header.len(), HEADER_LEN);
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(&header)?;
    file.write_all(artifact)
}

/// Checks an entry's header against `key` and its payload against the
/// checksum; says what is wrong otherwise.
fn check_entry(data: &[u8], key: &CacheKey) -> Result<(), String> {
    let Some((header, payload)) = data.split_at_checked(HEADER_LEN) else {
        return Err(format!("truncated header ({} bytes)", data.len()));
    };
    let (magic, rest) = header.split_at(MAGIC.len());
    let (format, rest) = rest.split_at(4);
    let (entry_key, rest) = rest.split_at(32);
    let (length, checksum) = rest.split_at(8);
    if magic != MAGIC {
        return Err("not a beanbox code cache entry".into());
    }
    let format = u32::from_le_bytes(format.try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(format!("format {format}, expected {FORMAT}"));
    }
    if entry_key != key.0 {
        return Err("written under another key".into());
    }
    let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
    if length != payload.len() as u64 {
        return Err(format!(
            "payload of {} bytes, header says {length}",
            payload.len()
        ));
    }
    if Sha256::digest(payload)[..] != *checksum {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Refuses a directory that users other than its owner may write to: they
/// could plant native code there.
#[cfg(unix)]
fn check_not_shared(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "writable by other users (mode {:o}); its files run as native code",
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_not_shared(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmtime_version_matches_the_workspace_pin() {
        let manifest = include_str!("../../../Cargo.toml");
        let pin = format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"");
        assert!(
            manifest.contains(&pin),
            "update WASMTIME_VERSION with the wasmtime pin"
        );
    }

    #[test]
    fn entry_checks_refuse_damage() {
        let key = CacheKey([7; 32]);
        let dir = std::env::temp_dir().join(format!("beanbox-cache-unit-{}", std::process::id()));
        let cache = CodeCache::new(&dir).unwrap();
        cache.store(&key, b"artifact").unwrap();
        let good = fs::read(cache.entry_path(&key)).unwrap();
        assert_eq!(check_entry(&good, &key), Ok(()));
        assert!(check_entry(&good, &CacheKey([8; 32])).is_err());
        assert!(check_entry(&good[..good.len() - 1], &key).is_err());
        assert!(check_entry(&good[..10], &key).is_err());
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(check_entry(&flipped, &key).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
