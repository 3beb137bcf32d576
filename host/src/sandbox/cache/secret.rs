//! The cache's secret key: 32 random bytes in `mac.key` in the cache
//! directory, created owner-only on first use, with which every entry is
//! authenticated (HMAC-SHA256). Whoever cannot read it cannot write an entry
//! this cache accepts.

use std::fmt;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::trust::{self, Refusal, Role};

/// The key file's name in the cache directory.
pub(super) const KEY_FILE: &str = "mac.key";

/// Bytes of key.
const KEY_LEN: usize = 32;

/// Names temporary key files uniquely among the threads of this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The key. Its bytes are never shown.
#[derive(Clone)]
pub(super) struct Secret([u8; KEY_LEN]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads the key of the cache directory `dir`, creating it first if
    /// there is none: in a temporary file made with O_CREAT|O_EXCL|
    /// O_NOFOLLOW, mode 0600, then linked into place, so another process
    /// never reads half a key, and two starting together agree on one.
    ///
    /// # Errors
    ///
    /// When the key file is a symlink, not ours, readable by others, of the
    /// wrong length, or cannot be read or created.
    pub(super) fn load_or_create(dir: &OwnedFd) -> Result<Secret, Refusal> {
        if let Some(data) = trust::read_in(dir, KEY_FILE, Role::Key)? {
            return Secret::from_file(&data);
        }
        let mut key = [0; KEY_LEN];
        getrandom::fill(&mut key)
            .map_err(|e| Refusal::Io(format!("no random bytes for a key: {e}")))?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = format!(".tmp-key-{}-{n}", std::process::id());
        let created = trust::create_in(dir, &temp)
            .and_then(|mut file| file.write_all(&key))
            .and_then(|()| trust::link_in(dir, &temp, KEY_FILE));
        let _ = trust::remove_in(dir, &temp);
        match created {
            Ok(()) => Ok(Secret(key)),
            // Another process made one first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match trust::read_in(dir, KEY_FILE, Role::Key)? {
                    Some(data) => Secret::from_file(&data),
                    None => Err(Refusal::Io(format!("{KEY_FILE} vanished"))),
                }
            }
            Err(e) => Err(Refusal::Io(format!("cannot create {KEY_FILE}: {e}"))),
        }
    }

    fn from_file(data: &[u8]) -> Result<Secret, Refusal> {
        data.try_into().map(Secret).map_err(|_| {
            Refusal::Malformed(format!(
                "{KEY_FILE} holds {} bytes, expected {KEY_LEN}",
                data.len()
            ))
        })
    }

    /// The HMAC-SHA256 of `parts`, concatenated.
    pub(super) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.hmac();
        parts.iter().for_each(|p| mac.update(p));
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the HMAC-SHA256 of `parts`, concatenated (compared
    /// in constant time).
    pub(super) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.hmac();
        parts.iter().for_each(|p| mac.update(p));
        mac.verify_slice(tag).is_ok()
    }

    fn hmac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }

    #[cfg(test)]
    pub(super) fn fixed(byte: u8) -> Secret {
        Secret([byte; KEY_LEN])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_verifies_only_its_own_bytes_under_its_own_key() {
        let one = Secret::fixed(1);
        let tag = one.mac(&[b"head", b"payload"]);
        assert!(one.verify(&[b"head", b"payload"], &tag));
        assert!(one.verify(&[b"headpay", b"load"], &tag), "concatenated");
        assert!(!one.verify(&[b"head", b"payload!"], &tag));
        assert!(!Secret::fixed(2).verify(&[b"head", b"payload"], &tag));
        assert!(!one.verify(&[b"head", b"payload"], &tag[..31]));
    }

    #[test]
    fn a_key_file_of_the_wrong_length_is_refused() {
        assert!(Secret::from_file(&[0; 32]).is_ok());
        let short = Secret::from_file(&[0; 31]).unwrap_err();
        assert_eq!(short.to_string(), "mac.key holds 31 bytes, expected 32");
    }
}
