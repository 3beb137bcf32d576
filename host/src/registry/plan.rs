//! The registry's decisions, as pure functions of what is on disk and what
//! is loaded: which files to load and in which order, which to refuse
//! without reading them, which modules are gone, and whether a module has a
//! new version on its way (the deploy window).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use super::disk::{Fingerprint, Seen};

/// The largest module file each module may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SizeLimits {
    /// For modules not named below.
    pub(super) default: u64,
    /// Per module (from its tenant's `max_module_mb`).
    pub(super) per_module: HashMap<String, u64>,
}

impl SizeLimits {
    /// The limit for module `name`.
    pub(super) fn of(&self, name: &str) -> u64 {
        self.per_module.get(name).copied().unwrap_or(self.default)
    }
}

/// Why a version of a module file does not serve. It is not tried again
/// until the file changes (or, for [`Refusal::Size`], the limit does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The file stem cannot be a tube name, and a module serves the tube of
    /// its name.
    Name,
    /// The file is larger than the module's limit; it was not read.
    Size {
        /// The file's size (or the bytes read before the limit was hit).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Read, but not loadable: not a component, a missing import, a task
    /// signature that cannot cross JSON. The message says which.
    Load(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Name => f.write_str(
                "its file name is not a valid tube name (1 to 200 ASCII letters, digits \
                 and -+;.$_(), not starting with -, and not beanbox.failures): rename the file",
            ),
            Refusal::Size { size, limit } => write!(
                f,
                "the file is {size} bytes, over the limit of {limit} bytes ({} MiB; \
                 --max-module-mb, or the tenant's max_module_mb): not read",
                limit >> 20
            ),
            Refusal::Load(message) => f.write_str(message),
        }
    }
}

/// Whether `name` may be a module: it serves the tube of its name.
pub(super) fn valid_name(name: &str) -> bool {
    beanbox_queue::beanstalk::proto::validate_tube(name).is_ok()
        && name != crate::failures::FAILURES_TUBE
}

/// What one scan of the directory calls for.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// Versions refused without reading them.
    pub(super) refuse: Vec<(String, Seen, Refusal)>,
    /// Versions to load, smallest file first (then by name): at start the
    /// quick modules serve while the big ones compile.
    pub(super) load: Vec<(String, Seen)>,
    /// Loaded modules whose file is gone, sorted.
    pub(super) gone: Vec<String>,
    /// A file changed less than the settle time ago: scan again soon.
    pub(super) unsettled: bool,
}

/// Decides a scan: `on_disk` is what the directory holds, `live` and
/// `failed` the versions loaded and refused so far. A version is looked at
/// once it has not changed for `settle` (a file still being copied in is
/// left alone) and was neither loaded nor refused before.
pub(super) fn plan(
    on_disk: &HashMap<String, Seen>,
    live: &HashMap<String, Fingerprint>,
    failed: &HashMap<String, Fingerprint>,
    limits: &SizeLimits,
    now: SystemTime,
    settle: Duration,
) -> Plan {
    let mut plan = Plan::default();
    for (name, seen) in on_disk {
        if live.get(name) == Some(&seen.fp) || failed.get(name) == Some(&seen.fp) {
            continue;
        }
        if now.duration_since(seen.fp.modified).unwrap_or_default() < settle {
            plan.unsettled = true;
            continue;
        }
        let limit = limits.of(name);
        if !valid_name(name) {
            plan.refuse
                .push((name.clone(), seen.clone(), Refusal::Name));
        } else if seen.fp.len > limit {
            let size = seen.fp.len;
            let refusal = Refusal::Size { size, limit };
            plan.refuse.push((name.clone(), seen.clone(), refusal));
        } else {
            plan.load.push((name.clone(), seen.clone()));
        }
    }
    plan.refuse.sort_by(|a, b| a.0.cmp(&b.0));
    plan.load
        .sort_by(|a, b| (a.1.fp.len, &a.0).cmp(&(b.1.fp.len, &b.0)));
    plan.gone = live
        .keys()
        .filter(|name| !on_disk.contains_key(*name))
        .cloned()
        .collect();
    plan.gone.sort();
    plan
}

/// Whether module `name` has a version on its way: one on disk (`on_disk`)
/// that is not the live one, has not already failed, and is within the
/// limit. True from the moment a new version is renamed into place (before
/// any scan has noticed it) until it is live or refused.
pub(super) fn pending(
    on_disk: Option<Fingerprint>,
    live: Option<Fingerprint>,
    failed: Option<Fingerprint>,
    limit: u64,
) -> bool {
    on_disk.is_some_and(|fp| Some(fp) != live && Some(fp) != failed && fp.len <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const T0: Duration = Duration::from_secs(1_000_000);

    fn fp(len: u64, inode: u64) -> Fingerprint {
        Fingerprint {
            len,
            modified: SystemTime::UNIX_EPOCH + T0,
            inode,
        }
    }

    fn seen(name: &str, fp: Fingerprint) -> (String, Seen) {
        let path = PathBuf::from(format!("m/{name}.wasm"));
        (name.to_string(), Seen { path, fp })
    }

    fn limits(default: u64) -> SizeLimits {
        SizeLimits {
            default,
            per_module: HashMap::new(),
        }
    }

    fn later(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
    }

    const SETTLE: Duration = Duration::from_millis(200);

    #[test]
    fn new_files_load_smallest_first() {
        let on_disk: HashMap<_, _> = [
            seen("py", fp(18_000_000, 1)),
            seen("hello", fp(60_000, 2)),
            seen("js", fp(9_000_000, 3)),
            seen("b", fp(60_000, 4)),
        ]
        .into();
        let p = plan(
            &on_disk,
            &HashMap::new(),
            &HashMap::new(),
            &limits(64 << 20),
            later(5),
            SETTLE,
        );
        let order: Vec<&str> = p.load.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(order, ["b", "hello", "js", "py"]);
        assert!(p.refuse.is_empty() && p.gone.is_empty() && !p.unsettled);
    }

    #[test]
    fn a_file_still_changing_waits() {
        let on_disk: HashMap<_, _> = [seen("hello", fp(10, 1))].into();
        let young = SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(50);
        let p = plan(
            &on_disk,
            &HashMap::new(),
            &HashMap::new(),
            &limits(100),
            young,
            SETTLE,
        );
        assert!(p.load.is_empty() && p.unsettled);
    }

    #[test]
    fn live_and_failed_versions_are_left_alone_a_new_one_loads() {
        let on_disk: HashMap<_, _> = [
            seen("live", fp(10, 1)),
            seen("failed", fp(10, 2)),
            seen("new", fp(11, 3)),
        ]
        .into();
        let live: HashMap<_, _> =
            [("live".to_string(), fp(10, 1)), ("new".into(), fp(10, 9))].into();
        let failed: HashMap<_, _> = [("failed".to_string(), fp(10, 2))].into();
        let p = plan(&on_disk, &live, &failed, &limits(100), later(5), SETTLE);
        let names: Vec<&str> = p.load.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["new"]);
        assert!(p.refuse.is_empty());
    }

    #[test]
    fn bad_names_and_big_files_are_refused_unread() {
        let on_disk: HashMap<_, _> = [
            seen("bad name", fp(10, 1)),
            seen("-dash", fp(10, 2)),
            seen("beanbox.failures", fp(10, 6)),
            seen("big", fp(101, 3)),
            seen("fits", fp(100, 4)),
            seen("own", fp(150, 5)),
        ]
        .into();
        let mut limits = limits(100);
        limits.per_module.insert("own".into(), 200);
        let p = plan(
            &on_disk,
            &HashMap::new(),
            &HashMap::new(),
            &limits,
            later(5),
            SETTLE,
        );
        let refused: Vec<(&str, &Refusal)> =
            p.refuse.iter().map(|(n, _, r)| (n.as_str(), r)).collect();
        assert_eq!(
            refused,
            [
                ("-dash", &Refusal::Name),
                ("bad name", &Refusal::Name),
                ("beanbox.failures", &Refusal::Name),
                (
                    "big",
                    &Refusal::Size {
                        size: 101,
                        limit: 100
                    }
                ),
            ]
        );
        let names: Vec<&str> = p.load.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["fits", "own"]);
    }

    #[test]
    fn removed_files_are_gone() {
        let on_disk: HashMap<_, _> = [seen("kept", fp(10, 1))].into();
        let live: HashMap<_, _> = [
            ("kept".to_string(), fp(10, 1)),
            ("removed".into(), fp(10, 2)),
        ]
        .into();
        let p = plan(
            &on_disk,
            &live,
            &HashMap::new(),
            &limits(100),
            later(5),
            SETTLE,
        );
        assert_eq!(p.gone, ["removed"]);
        assert!(p.load.is_empty());
    }

    #[test]
    fn pending_while_a_new_version_is_on_its_way() {
        let (v1, v2) = (fp(10, 1), fp(12, 2));
        // Renamed into place, nothing noticed yet (or compiling).
        assert!(pending(Some(v2), Some(v1), None, 100));
        // At start: not loaded yet.
        assert!(pending(Some(v1), None, None, 100));
        // Live.
        assert!(!pending(Some(v2), Some(v2), None, 100));
        // It failed: the old version keeps serving, nothing is coming.
        assert!(!pending(Some(v2), Some(v1), Some(v2), 100));
        // A version newer than the failed one is on its way again.
        assert!(pending(Some(fp(13, 3)), Some(v1), Some(v2), 100));
        // Gone, or too big to ever load.
        assert!(!pending(None, Some(v1), None, 100));
        assert!(!pending(Some(fp(101, 4)), Some(v1), None, 100));
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert!(Refusal::Name.to_string().contains("rename the file"));
        let size = Refusal::Size {
            size: 3 << 30,
            limit: 64 << 20,
        }
        .to_string();
        assert!(
            size.contains("3221225472") && size.contains("64 MiB"),
            "{size}"
        );
    }
}
