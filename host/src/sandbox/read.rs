//! Reading a module file under a size limit, and giving the memory of a
//! compile back to the system: what loading may cost, whatever is deployed.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use super::LoadError;

/// The largest module file read by default: 64 MiB (the Python runtime
/// component is ~18 MB, JavaScript ~9 MB).
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 64 << 20;

/// Reads the module file at `path`, refusing one larger than `max` bytes
/// before reading it (by the size of the opened file), and stopping at
/// `max + 1` bytes whatever the size said (a file growing meanwhile, a pipe).
///
/// # Errors
///
/// [`LoadError::TooBig`] over the limit; [`LoadError::Read`] when the file
/// cannot be opened or read.
pub fn read_module(path: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    let shown = || path.display().to_string();
    let read_error = |e: std::io::Error| LoadError::Read {
        path: shown(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if meta.is_file() && meta.len() > max {
        return Err(LoadError::TooBig {
            path: shown(),
            size: meta.len(),
            limit: max,
        });
    }
    // Sized from the stat, never beyond the limit: a sparse 3 GB file costs
    // nothing here.
    let capacity = if meta.is_file() { meta.len() } else { 0 };
    let mut bytes = Vec::with_capacity(usize::try_from(capacity.min(max)).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > max {
        return Err(LoadError::TooBig {
            path: shown(),
            size: bytes.len() as u64,
            limit: max,
        });
    }
    Ok(bytes)
}

/// Hands the heap memory freed by a compile back to the system.
///
/// Cranelift compiles functions in parallel and frees its working memory
/// afterwards, but glibc keeps freed pages in each thread's arena: a module
/// of 150,000 functions left the worker at 902 MB RSS for good.
/// `malloc_trim(0)` returns the free pages of every arena (measured in the
/// commit that added it: back to within 2x of the RSS before the compile).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "glibc's malloc_trim has no safe wrapper; it is thread-safe"
)]
pub fn release_freed_memory() {
    // SAFETY: `malloc_trim` only returns free heap pages to the kernel; it
    // takes the allocator's own locks and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators give memory back on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_memory() {}

/// The resident set size of this process in bytes (`VmRSS` of
/// `/proc/self/status`), where the system tells it.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, len: u64) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("beanbox-read-unit-{}-{name}", std::process::id()));
        let file = File::create(&path).unwrap();
        file.set_len(len).unwrap();
        path
    }

    #[test]
    fn a_file_at_the_limit_is_read_one_over_is_refused_unread() {
        let at = temp_file("at", 1000);
        assert_eq!(read_module(&at, 1000).unwrap().len(), 1000);
        let over = temp_file("over", 1001);
        match read_module(&over, 1000) {
            Err(LoadError::TooBig { size, limit, path }) => {
                assert_eq!((size, limit), (1001, 1000));
                assert!(path.ends_with("over"), "{path}");
            }
            other => panic!("expected TooBig, got {other:?}"),
        }
        // A sparse file far over the limit: refused from its size.
        let huge = temp_file("huge", 3 << 30);
        assert!(matches!(
            read_module(&huge, 1000),
            Err(LoadError::TooBig { size, .. }) if size == 3 << 30
        ));
        for p in [at, over, huge] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn a_stream_is_cut_one_byte_past_the_limit() {
        // /dev/zero has no size to check first: only the bounded read stops it.
        match read_module(Path::new("/dev/zero"), 4096) {
            Err(LoadError::TooBig { size, limit, .. }) => assert_eq!((size, limit), (4097, 4096)),
            other => panic!("expected TooBig, got {other:?}"),
        }
    }

    #[test]
    fn the_message_names_file_size_and_limit() {
        let e = LoadError::TooBig {
            path: "m/big.wasm".into(),
            size: 3 << 30,
            limit: 64 << 20,
        };
        let text = e.to_string();
        for part in ["m/big.wasm", "3221225472", "67108864", "64 MiB"] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn resident_size_is_known_on_linux() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
