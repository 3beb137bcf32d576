//! The layout of an entry and its checks: a header, then the wasmtime
//! artifact. The header binds the artifact to its key and to this cache's
//! secret key.

use sha2::{Digest as _, Sha256};

use super::key::CacheKey;
use super::secret::Secret;
use super::trust::Refusal;

/// The first bytes of every entry.
const MAGIC: &[u8; 8] = b"BBXCWASM";

/// The layout of the header below; bumped when it changes, and an entry of
/// another format is replaced. 2: the MAC was added.
pub(super) const FORMAT: u32 = 2;

/// Header: magic, format (u32 LE), the entry's key, payload length (u64 LE),
/// SHA-256 of the payload, then the HMAC-SHA256 (with the cache's secret
/// key) of everything before it and of the payload.
const SIGNED_LEN: usize = MAGIC.len() + 4 + 32 + 8 + 32;

/// The whole header, MAC included: where the payload starts.
pub(super) const HEADER_LEN: usize = SIGNED_LEN + 32;

/// The header of the entry for `key` holding `artifact`.
pub(super) fn header(key: &CacheKey, artifact: &[u8], secret: &Secret) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(&key.0);
    header.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    header.extend_from_slice(&Sha256::digest(artifact));
    let mac = secret.mac(&[&header, artifact]);
    header.extend_from_slice(&mac);
    debug_assert_eq!(header.len(), HEADER_LEN);
    header
}

/// Checks a whole entry against `key` and `secret`: the header's fields,
/// then the MAC over header and payload. Says what is wrong otherwise; a
/// payload that fails the MAC is told apart as damaged (its checksum fails
/// too) or foreign (its checksum holds).
pub(super) fn check(data: &[u8], key: &CacheKey, secret: &Secret) -> Result<(), Refusal> {
    let Some((header, payload)) = data.split_at_checked(HEADER_LEN) else {
        return Err(Refusal::Malformed(format!(
            "truncated header ({} bytes)",
            data.len()
        )));
    };
    let (signed, mac) = header.split_at(SIGNED_LEN);
    let (magic, rest) = signed.split_at(MAGIC.len());
    let (format, rest) = rest.split_at(4);
    let (entry_key, rest) = rest.split_at(32);
    let (length, checksum) = rest.split_at(8);
    if magic != MAGIC {
        return Err(Refusal::Malformed("not a beanbox code cache entry".into()));
    }
    let format = u32::from_le_bytes(format.try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(Refusal::Malformed(format!(
            "format {format}, expected {FORMAT}"
        )));
    }
    if entry_key != key.0 {
        return Err(Refusal::Malformed("written under another key".into()));
    }
    let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
    if length != payload.len() as u64 {
        return Err(Refusal::Malformed(format!(
            "payload of {} bytes, header says {length}",
            payload.len()
        )));
    }
    if secret.verify(&[signed, payload], mac) {
        return Ok(());
    }
    // Only on failure: the second pass over the payload names the cause.
    if Sha256::digest(payload)[..] != *checksum {
        return Err(Refusal::Checksum);
    }
    Err(Refusal::BadMac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &CacheKey, artifact: &[u8], secret: &Secret) -> Vec<u8> {
        let mut data = header(key, artifact, secret);
        data.extend_from_slice(artifact);
        data
    }

    #[test]
    fn an_entry_passes_only_with_its_key_and_secret() {
        let key = CacheKey([7; 32]);
        let secret = Secret::fixed(1);
        let good = entry(&key, b"artifact", &secret);
        assert_eq!(check(&good, &key, &secret), Ok(()));
        assert_eq!(
            check(&good, &CacheKey([8; 32]), &secret),
            Err(Refusal::Malformed("written under another key".into()))
        );
        assert_eq!(
            check(&good, &key, &Secret::fixed(2)),
            Err(Refusal::BadMac),
            "another cache's entry"
        );
    }

    #[test]
    fn damage_is_told_from_forgery() {
        let key = CacheKey([7; 32]);
        let secret = Secret::fixed(1);
        let good = entry(&key, b"artifact", &secret);

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(check(&flipped, &key, &secret), Err(Refusal::Checksum));

        // A planted payload with a recomputed checksum: only the MAC tells.
        let mut forged = header(&key, b"artifacT", &Secret::fixed(9));
        forged.extend_from_slice(b"artifacT");
        assert_eq!(check(&forged, &key, &secret), Err(Refusal::BadMac));

        let mut mac_flipped = good.clone();
        mac_flipped[HEADER_LEN - 1] ^= 1;
        assert_eq!(check(&mac_flipped, &key, &secret), Err(Refusal::BadMac));
    }

    #[test]
    fn a_short_or_foreign_header_is_malformed() {
        let key = CacheKey([7; 32]);
        let secret = Secret::fixed(1);
        let good = entry(&key, b"artifact", &secret);
        let refusal = |data: &[u8]| check(data, &key, &secret).unwrap_err().to_string();
        assert_eq!(refusal(&good[..10]), "truncated header (10 bytes)");
        assert_eq!(
            refusal(&good[..good.len() - 1]),
            "payload of 7 bytes, header says 8"
        );
        let mut old = good.clone();
        old[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(refusal(&old), "format 1, expected 2");
        let mut alien = good;
        alien[0] = b'X';
        assert_eq!(refusal(&alien), "not a beanbox code cache entry");
    }
}
