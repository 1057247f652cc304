//! The key-encryption key (KEK) that seals the server-managed private keys at rest.
//!
//! AES-256-GCM (aws-lc-rs): each seal draws a fresh random 96-bit nonce, and the additional
//! authenticated data binds the sealed blob to its key id and owner, so that a blob copied onto
//! another row of the store does not open. The KEK itself is never stored, logged or printed
//! (`Debug` shows only its check value); the store keeps only [`Kek::check_value`], an HMAC of a
//! fixed label, so that a server started with the wrong KEK fails at start.

use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine as _;

use crate::ids::random_bytes;
use crate::{IamError, Result};

/// Length of a KEK, bytes.
pub const KEK_LEN: usize = 32;

/// The environment variable `esprit iam serve` reads the KEK from (base64 or base64url of 32
/// bytes) when `--kek-file` is not given.
pub const KEK_ENV: &str = "ESPRIT_IAM_KEK";

/// Version byte in front of every sealed blob (nonce and ciphertext follow).
const SEALED_V1: u8 = 1;

/// The key-encryption key: 32 random bytes. `Debug` never prints it.
#[derive(Clone)]
pub struct Kek {
    bytes: [u8; KEK_LEN],
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek(check {})", self.check_value())
    }
}

impl Kek {
    /// A new random KEK.
    pub fn generate() -> Result<Kek> {
        Ok(Kek {
            bytes: random_bytes::<KEK_LEN>()?,
        })
    }

    /// Parses base64url or standard base64 (padding optional; blanks around it ignored) of
    /// exactly 32 bytes. The error never repeats the value.
    pub fn from_env_value(text: &str) -> Result<Kek> {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let trimmed = text.trim().trim_end_matches('=');
        if trimmed.is_empty() {
            return Err(IamError::KekInvalid("it is empty"));
        }
        let decoded = URL_SAFE_NO_PAD
            .decode(trimmed)
            .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
            .map_err(|_| IamError::KekInvalid("it is not base64"))?;
        let bytes: [u8; KEK_LEN] = decoded
            .try_into()
            .map_err(|_| IamError::KekInvalid("it is not 32 bytes long"))?;
        Ok(Kek { bytes })
    }

    /// Reads a KEK file (the text [`Kek::to_file_text`] writes: base64url, one line).
    pub fn from_file(path: &Path) -> Result<Kek> {
        let text = std::fs::read_to_string(path).map_err(|source| IamError::KekFile {
            path: path.to_owned(),
            source,
        })?;
        Kek::from_env_value(&text)
    }

    /// Writes the KEK to a new file `path` (mode 0600 on Unix; never over an existing file),
    /// as one line of base64url.
    pub fn write_new_file(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                IamError::KekFileExists(path.to_owned())
            } else {
                IamError::KekFile {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        let mut text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.bytes);
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| IamError::KekFile {
                path: path.to_owned(),
                source,
            })
    }

    /// A value that identifies the KEK without revealing it: HMAC-SHA256 of a fixed label under
    /// the KEK, first 16 bytes, hex. The store records it next to the sealed keys.
    pub fn check_value(&self) -> String {
        use std::fmt::Write as _;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.bytes);
        let tag = hmac::sign(&key, b"esprit iam kek check v1");
        tag.as_ref()
            .iter()
            .take(16)
            .fold(String::with_capacity(32), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }

    fn aead_key(&self) -> Result<LessSafeKey> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, &self.bytes).map_err(|_| IamError::Crypto("AES key"))?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Seals `plaintext` bound to `aad`: `01 || nonce (12) || ciphertext || tag (16)`.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let mut in_out = plaintext.to_vec();
        self.aead_key()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| IamError::Crypto("sealing"))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce_bytes);
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Opens a blob made by [`Kek::seal`] with the same `aad`; `None` when the KEK, the AAD or
    /// the blob differ.
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != SEALED_V1 || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .aead_key()
            .ok()?
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn seal_and_open_round_trip_bound_to_the_aad() {
        let kek = Kek::generate().unwrap();
        let sealed = kek.seal(b"secret key", b"key-1\0owner").unwrap();
        assert_eq!(sealed.len(), 1 + 12 + 10 + 16);
        assert_eq!(kek.open(&sealed, b"key-1\0owner").unwrap(), b"secret key");
        assert!(kek.open(&sealed, b"key-2\0owner").is_none());
        assert!(
            Kek::generate()
                .unwrap()
                .open(&sealed, b"key-1\0owner")
                .is_none()
        );
        // A fresh nonce per seal.
        assert_ne!(kek.seal(b"secret key", b"a").unwrap()[1..13], sealed[1..13]);
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 1;
            assert!(kek.open(&flipped, b"key-1\0owner").is_none(), "byte {i}");
        }
        assert!(kek.open(&sealed[..20], b"key-1\0owner").is_none());
    }

    #[test]
    fn parses_base64_and_base64url_of_32_bytes_only() {
        let bytes: Vec<u8> = (0u8..32)
            .map(|b| b.wrapping_mul(37).wrapping_add(250))
            .collect();
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let a = Kek::from_env_value(&STANDARD.encode(&bytes)).unwrap();
        let b = Kek::from_env_value(&format!(" {}\n", URL_SAFE_NO_PAD.encode(&bytes))).unwrap();
        assert_eq!(a.check_value(), b.check_value());
        for (text, want) in [
            ("", "it is empty"),
            ("!!!", "it is not base64"),
            (&*STANDARD.encode([1u8; 31]), "it is not 32 bytes long"),
            (&*STANDARD.encode([1u8; 33]), "it is not 32 bytes long"),
        ] {
            match Kek::from_env_value(text) {
                Err(IamError::KekInvalid(reason)) => assert_eq!(reason, want, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let kek = Kek::generate().unwrap();
        let shown = format!("{kek:?}");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kek.bytes);
        assert!(!shown.contains(&b64));
        assert!(shown.contains(&kek.check_value()));
        let err = Kek::from_env_value(&format!("{b64}xx"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains(&b64), "{err}");
    }

    #[test]
    fn files_are_new_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let kek = Kek::generate().unwrap();
        kek.write_new_file(&path).unwrap();
        assert_eq!(
            Kek::from_file(&path).unwrap().check_value(),
            kek.check_value()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            Kek::generate().unwrap().write_new_file(&path),
            Err(IamError::KekFileExists(p)) if p == path
        ));
        assert_eq!(
            Kek::from_file(&path).unwrap().check_value(),
            kek.check_value()
        );
        assert!(matches!(
            Kek::from_file(&dir.path().join("missing")),
            Err(IamError::KekFile { .. })
        ));
    }
}
