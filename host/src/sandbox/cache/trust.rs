//! Whether a file of the cache may be trusted: the decisions (pure, tested
//! below) and the opening of the directory, its entries and its key without
//! following symlinks, judged on the opened descriptor (`fstat`), never on
//! a path that may have changed since.

use std::fmt;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

/// Why the cache, or a file in it, is not trusted. Each says what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The name is a symbolic link (never followed).
    Symlink,
    /// Not a directory (the cache) or not a regular file (an entry, the key).
    WrongType(&'static str),
    /// Owned by a user other than the worker's (effective uid).
    Owner {
        /// The owner found.
        uid: u32,
    },
    /// Users other than the owner may write to it.
    Writable {
        /// Its permission bits.
        mode: u32,
    },
    /// The secret key may be read or written by users other than its owner.
    Exposed {
        /// Its permission bits.
        mode: u32,
    },
    /// The header does not describe this entry: truncated, another format,
    /// another key, another length; says which.
    Malformed(String),
    /// The payload does not match the checksum in the header: damaged.
    Checksum,
    /// The checksum matches, the MAC does not: the entry was not written
    /// with this cache's key (planted, or copied from another cache).
    BadMac,
    /// wasmtime refused the artifact (another engine configuration).
    Incompatible(String),
    /// It could not be opened or read.
    Io(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Symlink => f.write_str("symlink"),
            Refusal::WrongType(what) => write!(f, "not a {what}"),
            Refusal::Owner { uid } => write!(f, "owned by uid {uid}"),
            Refusal::Writable { mode } => {
                write!(f, "writable by group or others (mode {mode:03o})")
            }
            Refusal::Exposed { mode } => {
                write!(f, "key readable by group or others (mode {mode:03o})")
            }
            Refusal::Malformed(what) => f.write_str(what),
            Refusal::Checksum => f.write_str("checksum mismatch"),
            Refusal::BadMac => f.write_str("bad MAC"),
            Refusal::Incompatible(why) => write!(f, "wasmtime refused it: {why}"),
            Refusal::Io(error) => write!(f, "cannot read it: {error}"),
        }
    }
}

/// What a file of the cache is, which decides what it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The cache directory.
    Directory,
    /// A compiled-code entry.
    Entry,
    /// The secret key.
    Key,
}

/// What `fstat` says about an opened file, as far as trust goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Facts {
    pub(super) kind: FileType,
    pub(super) uid: u32,
    /// Permission bits (`mode & 0o7777`).
    pub(super) mode: u32,
}

impl Facts {
    #[allow(
        clippy::useless_conversion,
        reason = "mode_t is u32 on Linux, u16 elsewhere"
    )]
    fn of(stat: &Stat) -> Facts {
        Facts {
            kind: FileType::from_raw_mode(stat.st_mode),
            uid: stat.st_uid,
            mode: u32::from(stat.st_mode) & 0o7777,
        }
    }
}

/// Whether a file in `role` with `facts` may be trusted by a process whose
/// effective uid is `euid`: the right kind, owned by `euid`, writable by
/// nobody else (the key: not even readable).
pub(super) fn judge(role: Role, facts: Facts, euid: u32) -> Result<(), Refusal> {
    let (kind, what) = match role {
        Role::Directory => (FileType::Directory, "directory"),
        Role::Entry | Role::Key => (FileType::RegularFile, "regular file"),
    };
    if facts.kind == FileType::Symlink {
        return Err(Refusal::Symlink);
    }
    if facts.kind != kind {
        return Err(Refusal::WrongType(what));
    }
    if facts.uid != euid {
        return Err(Refusal::Owner { uid: facts.uid });
    }
    if role == Role::Key && facts.mode & 0o077 != 0 {
        return Err(Refusal::Exposed { mode: facts.mode });
    }
    if facts.mode & 0o022 != 0 {
        return Err(Refusal::Writable { mode: facts.mode });
    }
    Ok(())
}

/// The effective uid of this process: the only owner trusted.
pub(super) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Opens the directory `path` without following a symlink at its last
/// component, and judges the opened descriptor.
pub(super) fn open_dir(path: &Path) -> Result<OwnedFd, Refusal> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        // With O_DIRECTORY a symlink fails as "not a directory" (Linux) or
        // ELOOP; the path says which, for the message only: refused anyway.
        Err(Errno::NOTDIR | Errno::LOOP) => {
            let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
            return Err(if is_link {
                Refusal::Symlink
            } else {
                Refusal::WrongType("directory")
            });
        }
        Err(e) => return Err(Refusal::Io(io::Error::from(e).to_string())),
    };
    judge_fd(&fd, Role::Directory)?;
    Ok(fd)
}

/// Reads the file `name` in `dir` (opened without following a symlink, and
/// judged as `role` first); `None` when there is none.
pub(super) fn read_in(dir: &OwnedFd, name: &str, role: Role) -> Result<Option<Vec<u8>>, Refusal> {
    // O_NONBLOCK: a FIFO planted under the name must not hang the open.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err(Refusal::Symlink),
        Err(e) => return Err(Refusal::Io(io::Error::from(e).to_string())),
    };
    judge_fd(&fd, role)?;
    let mut data = Vec::new();
    File::from(fd)
        .read_to_end(&mut data)
        .map_err(|e| Refusal::Io(e.to_string()))?;
    Ok(Some(data))
}

/// Creates the file `name` in `dir`, owner-only (0600), failing if anything
/// (a symlink included) already has that name.
pub(super) fn create_in(dir: &OwnedFd, name: &str) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    Ok(File::from(fd))
}

/// Renames `from` to `to`, both in `dir`, replacing `to`.
pub(super) fn rename_in(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    Ok(rustix::fs::renameat(dir, from, dir, to)?)
}

/// Makes `to` a second name of `from`, both in `dir`; fails if `to` exists.
pub(super) fn link_in(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    Ok(rustix::fs::linkat(dir, from, dir, to, AtFlags::empty())?)
}

/// Removes the file `name` from `dir`.
pub(super) fn remove_in(dir: &OwnedFd, name: &str) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// How long ago the file `name` in `dir` was modified (not following a
/// symlink).
pub(super) fn age_in(dir: &OwnedFd, name: &str) -> io::Result<std::time::Duration> {
    let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let modified = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(stat.st_mtime).unwrap_or(0));
    Ok(std::time::SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default())
}

/// The names in `dir`.
pub(super) fn names_in(dir: &OwnedFd) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        if let Ok(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn judge_fd(fd: &OwnedFd, role: Role) -> Result<(), Refusal> {
    let stat = rustix::fs::fstat(fd).map_err(|e| Refusal::Io(io::Error::from(e).to_string()))?;
    judge(role, Facts::of(&stat), euid())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;

    fn facts(kind: FileType, uid: u32, mode: u32) -> Facts {
        Facts { kind, uid, mode }
    }

    #[test]
    fn the_directory_must_be_ours_and_closed_to_writers() {
        let dir = |uid, mode| judge(Role::Directory, facts(FileType::Directory, uid, mode), ME);
        assert_eq!(dir(ME, 0o700), Ok(()));
        assert_eq!(dir(ME, 0o755), Ok(()), "others may read and list");
        assert_eq!(dir(ME, 0o775), Err(Refusal::Writable { mode: 0o775 }));
        assert_eq!(dir(ME, 0o757), Err(Refusal::Writable { mode: 0o757 }));
        assert_eq!(dir(ME, 0o1777), Err(Refusal::Writable { mode: 0o1777 }));
        assert_eq!(dir(1234, 0o700), Err(Refusal::Owner { uid: 1234 }));
        assert_eq!(
            dir(0, 0o700),
            Err(Refusal::Owner { uid: 0 }),
            "not even root's"
        );
        let root = judge(Role::Directory, facts(FileType::Directory, 0, 0o700), 0);
        assert_eq!(root, Ok(()), "root's own");
    }

    #[test]
    fn an_entry_must_be_a_regular_file_of_ours_closed_to_writers() {
        let entry = |kind, uid, mode| judge(Role::Entry, facts(kind, uid, mode), ME);
        assert_eq!(entry(FileType::RegularFile, ME, 0o600), Ok(()));
        assert_eq!(entry(FileType::RegularFile, ME, 0o644), Ok(()));
        assert_eq!(
            entry(FileType::RegularFile, ME, 0o620),
            Err(Refusal::Writable { mode: 0o620 })
        );
        assert_eq!(
            entry(FileType::RegularFile, ME, 0o602),
            Err(Refusal::Writable { mode: 0o602 })
        );
        assert_eq!(
            entry(FileType::RegularFile, 1234, 0o600),
            Err(Refusal::Owner { uid: 1234 })
        );
        assert_eq!(entry(FileType::Symlink, ME, 0o777), Err(Refusal::Symlink));
        assert_eq!(
            entry(FileType::Fifo, ME, 0o600),
            Err(Refusal::WrongType("regular file"))
        );
        assert_eq!(
            entry(FileType::Directory, ME, 0o700),
            Err(Refusal::WrongType("regular file"))
        );
    }

    #[test]
    fn the_key_must_be_ours_alone() {
        let key = |uid, mode| judge(Role::Key, facts(FileType::RegularFile, uid, mode), ME);
        assert_eq!(key(ME, 0o600), Ok(()));
        assert_eq!(key(ME, 0o400), Ok(()));
        assert_eq!(key(ME, 0o640), Err(Refusal::Exposed { mode: 0o640 }));
        assert_eq!(key(ME, 0o604), Err(Refusal::Exposed { mode: 0o604 }));
        assert_eq!(key(ME, 0o610), Err(Refusal::Exposed { mode: 0o610 }));
        assert_eq!(key(1234, 0o600), Err(Refusal::Owner { uid: 1234 }));
    }

    #[test]
    fn refusals_say_what_was_found() {
        assert_eq!(
            Refusal::Owner { uid: 1234 }.to_string(),
            "owned by uid 1234"
        );
        assert_eq!(
            Refusal::Writable { mode: 0o775 }.to_string(),
            "writable by group or others (mode 775)"
        );
        assert_eq!(Refusal::Symlink.to_string(), "symlink");
        assert_eq!(Refusal::BadMac.to_string(), "bad MAC");
        assert_eq!(
            Refusal::WrongType("directory").to_string(),
            "not a directory"
        );
    }
}
