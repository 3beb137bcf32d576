//! What the modules directory holds: each `*.wasm` file's module name and
//! the fingerprint of its current version, found by `stat` alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What identifies one version of a file on disk: a rename of a new version
/// into place changes the inode, an in-place copy the size or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    pub(super) len: u64,
    pub(super) modified: SystemTime,
    pub(super) inode: u64,
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self {
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            inode: meta.ino(),
        }
    }
}

/// One module file: where it is and which version it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) path: PathBuf,
    pub(super) fp: Fingerprint,
}

/// The regular `*.wasm` files of `dir` by module name (the file stem; a
/// stem that is not UTF-8 is named lossily, which no valid name matches).
pub(super) fn list(dir: &Path) -> std::io::Result<HashMap<String, Seen>> {
    let mut on_disk = HashMap::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let (Some(stem), Ok(meta)) = (path.file_stem(), std::fs::metadata(&path)) else {
            continue;
        };
        if meta.is_file() {
            let name = stem.to_string_lossy().into_owned();
            let fp = Fingerprint::of(&meta);
            on_disk.insert(name, Seen { path, fp });
        }
    }
    Ok(on_disk)
}

/// The version of the module file at `path` now, if there is one.
pub(super) fn stat(path: PathBuf) -> Option<Seen> {
    let meta = std::fs::metadata(&path).ok()?;
    meta.is_file().then(|| Seen {
        fp: Fingerprint::of(&meta),
        path,
    })
}

/// Every module file: those of `dir`, except the modules that have a
/// directory of their own in `own` (their tenant's `dir`), which are looked
/// for there and nowhere else; other files in those directories are not
/// modules of this worker.
pub(super) fn scan(
    dir: &Path,
    own: &HashMap<String, PathBuf>,
) -> std::io::Result<HashMap<String, Seen>> {
    let mut on_disk = list(dir)?;
    on_disk.retain(|name, _| !own.contains_key(name));
    for (name, own_dir) in own {
        if let Some(seen) = stat(own_dir.join(format!("{name}.wasm"))) {
            on_disk.insert(name.clone(), seen);
        }
    }
    Ok(on_disk)
}
