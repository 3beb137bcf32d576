//! What the hot-deploy and tenant tests share: a modules directory the test
//! changes under a running worker ([`crate::worker_support::Runner`] runs
//! it), patched versions of `hello.wasm`, and tube stats.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use beanbox_queue::{Client, JobState, ReplyBody, TubeStats};

use crate::support;
use crate::worker_support::{POLL, Replies, TempDir, eventually, job_stats};

/// The marker `hello`'s `version` export returns, with version `0000`.
const VERSION_MARKER: &[u8] = b"beanbox-version:0000";

/// A modules directory (`<name>.wasm` files, copied, not linked, so the
/// test may replace them), removed on drop.
#[derive(Debug)]
pub struct Modules(TempDir);

impl Modules {
    /// A directory holding a copy of each task component in `components`,
    /// under its own name.
    pub fn with(components: &[&str]) -> Modules {
        let modules = Modules(TempDir::new("modules"));
        for component in components {
            modules.copy(component, component);
        }
        modules
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// The directory as a `&str`, for command lines.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The file of module `name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.wasm"))
    }

    /// Copies task component `component` to `<name>.wasm` in place, as a
    /// plain `cp` would (the file is written in several steps).
    pub fn copy(&self, component: &str, name: &str) {
        let to = self.file(name);
        std::fs::copy(support::wasm(component), &to)
            .unwrap_or_else(|e| panic!("cannot copy {component}.wasm to {}: {e}", to.display()));
    }

    /// Deploys `bytes` as module `name` the recommended way: written to a
    /// temporary file in the same directory, then renamed into place.
    pub fn deploy(&self, name: &str, bytes: &[u8]) {
        let temp = self.path().join(format!(".{name}.wasm.tmp"));
        std::fs::write(&temp, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", temp.display()));
        let to = self.file(name);
        std::fs::rename(&temp, &to).unwrap_or_else(|e| {
            panic!("cannot rename {} to {}: {e}", temp.display(), to.display())
        });
    }

    /// Removes module `name`.
    pub fn remove(&self, name: &str) {
        let file = self.file(name);
        std::fs::remove_file(&file)
            .unwrap_or_else(|e| panic!("cannot remove {}: {e}", file.display()));
    }
}

/// The bytes of `hello.wasm` whose `version` export returns
/// `beanbox-version:NNNN` with `version` as NNNN: a new valid component.
pub fn hello_version(version: u16) -> Vec<u8> {
    assert!(version <= 9999, "a version has four digits");
    let mut bytes = std::fs::read(support::wasm("hello")).expect("cannot read hello.wasm");
    let at: Vec<usize> = bytes
        .windows(VERSION_MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == VERSION_MARKER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "hello.wasm should hold its version marker exactly once; rebuild it with tasks/build.sh"
    );
    let digits = at[0] + VERSION_MARKER.len() - 4;
    bytes[digits..digits + 4].copy_from_slice(format!("{version:04}").as_bytes());
    bytes
}

/// What `hello`'s `version` export returns for `version`.
pub fn version_marker(version: u16) -> String {
    format!("beanbox-version:{version:04}")
}

/// The default code cache directory of the one worker that ran with
/// `XDG_CACHE_HOME` set to `home`: `home/beanbox/worker-<hash>`.
pub fn worker_cache_dir(home: &Path) -> PathBuf {
    let base = home.join("beanbox");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("no cache directory {}: {e}", base.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("worker-")
        })
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "one worker cache in {}: {dirs:?}",
        base.display()
    );
    dirs.into_iter().next().unwrap()
}

/// The compiled-code entries (`*.cwasm`) in `dir`, sorted.
pub fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    entries
}

/// Writes `text` as `tenants.toml` in `dir`; returns its path as a string.
pub fn write_config(dir: &TempDir, text: &str) -> String {
    let path = dir.path().join("tenants.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A tube's stats, or `None` when beanstalkd does not know the tube (no job
/// and no connection ever touched it, or all have gone).
pub async fn tube_stats(client: &mut Client, tube: &str) -> Option<TubeStats> {
    match client.stats_tube(tube).await {
        Ok(stats) => Some(stats),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("stats-tube {tube} failed: {e}"),
    }
}

/// Waits until `n` connections watch `tube` (0: none does).
pub async fn wait_watching(client: &mut Client, tube: &str, n: u64) {
    let what = format!("{n} connections watching tube `{tube}`");
    eventually(Duration::from_secs(20), &what, async || {
        let watching = tube_stats(client, tube)
            .await
            .map_or(0, |s| s.current_watching);
        (watching == n).then_some(())
    })
    .await;
}

/// Asserts that job `id` stays ready, never reserved, for `period`.
pub async fn assert_stays_ready(client: &mut Client, id: u64, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        let stats = job_stats(client, id)
            .await
            .unwrap_or_else(|| panic!("job {id} was deleted; it should have stayed ready"));
        assert!(
            stats.state == JobState::Ready && stats.reserves == 0,
            "job {id} should stay ready and unreserved: {stats:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The next `n` replies, each within `timeout` of the one before, by job id;
/// panics on a second reply for one job.
pub async fn replies_by_job(
    replies: &mut Replies,
    n: usize,
    timeout: Duration,
) -> HashMap<u64, ReplyBody> {
    let mut by_job = HashMap::new();
    for _ in 0..n {
        let reply = replies.next(timeout).await;
        if let Some(old) = by_job.insert(reply.job, reply) {
            panic!("two replies for job {}: {old:?}", old.job);
        }
    }
    by_job
}
