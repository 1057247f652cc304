//! New service-account keys: the key pair, its self-signed certificate, the key file the user
//! receives, and writing that file (0600, never over an existing file).

use std::io::Write as _;
use std::path::Path;

use jose::ServiceAccountKey;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SerialNumber};

use crate::ids::new_key_id;
use crate::model::{Account, KeyAlgorithm, KeyServerUrl, KeyStatus, StoredKey};
use crate::{IamError, Result};

/// A freshly made key: the file for the user (with the private key) and the public part for
/// the store. Drop the key file once written: nothing else may keep the private key.
pub struct NewKey {
    /// The Google-format key file.
    pub key_file: ServiceAccountKey,
    /// What the store keeps.
    pub stored: StoredKey,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key_file", &self.key_file)
            .field("key_id", &self.stored.key_id)
            .finish_non_exhaustive()
    }
}

/// Google's user-managed keys are valid until the end of year 9999; so are esprit's.
fn not_after() -> time::OffsetDateTime {
    rcgen::date_time_ymd(9999, 12, 31)
}

/// A self-signed certificate (subject and issuer CN = `email`) over the key pair of
/// `private_pkcs8_pem`, valid from `now` (seconds since the epoch) to 9999-12-31.
pub(crate) fn self_signed_certificate(
    private_pkcs8_pem: &str,
    email: &str,
    now: u64,
) -> Result<String> {
    let pair = KeyPair::from_pem(private_pkcs8_pem)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, email);
    params.distinguished_name = name;
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    // Out of range only for times past year 9999; the epoch is then as good as any.
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    params.not_after = not_after();
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| IamError::Random)?;
    serial[0] &= 0x7f; // a positive INTEGER
    params.serial_number = Some(SerialNumber::from(serial.to_vec()));
    Ok(params.self_signed(&pair)?.pem())
}

/// Generates a key for `account`: the key pair, a random 40-hex key id, the certificate, and the
/// key file whose `client_x509_cert_url` points at `key_server`.
pub fn new_key(
    account: &Account,
    algorithm: KeyAlgorithm,
    key_server: &KeyServerUrl,
    now: u64,
) -> Result<NewKey> {
    let generated = match algorithm {
        KeyAlgorithm::Rs256 => jose::generate_rsa_2048()?,
        KeyAlgorithm::Es256 => jose::generate_es256()?,
    };
    let key_id = new_key_id()?;
    let certificate_pem =
        self_signed_certificate(&generated.private_pkcs8_pem, &account.email, now)?;
    let mut key_file = ServiceAccountKey::new_google(
        &account.project_id,
        &account.email,
        &account.unique_id,
        &key_id,
        &generated.private_pkcs8_pem,
    );
    key_file.client_x509_cert_url = key_server.x509_url(&account.email);
    let stored = StoredKey {
        key_id,
        email: account.email.clone(),
        algorithm,
        public_key_pem: generated.public_spki_pem.clone(),
        certificate_pem,
        created: now,
        state: KeyStatus::Enabled,
    };
    Ok(NewKey { key_file, stored })
}

/// A key file opened for writing: created new with mode 0600, still empty. Opening before the
/// key is recorded lets a bad `--out` fail before anything changes.
#[derive(Debug)]
pub struct KeyFileSlot {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl KeyFileSlot {
    /// Creates `path` (mode 0600 on Unix), refusing to overwrite an existing file.
    pub fn create(path: &Path) -> Result<KeyFileSlot> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(file) => Ok(KeyFileSlot {
                file,
                path: path.to_owned(),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(IamError::KeyFileExists(path.to_owned()))
            }
            Err(source) => Err(IamError::KeyFileWrite {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the key file as Google's pretty JSON and syncs it to disk.
    pub fn write(mut self, key_file: &ServiceAccountKey) -> Result<()> {
        let mut json = key_file.to_json();
        json.push('\n');
        let result = self
            .file
            .write_all(json.as_bytes())
            .and_then(|()| self.file.sync_all());
        result.map_err(|source| IamError::KeyFileWrite {
            path: self.path.clone(),
            source,
        })
    }

    /// Removes the (empty) file: the key could not be recorded.
    pub fn abandon(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn account() -> Account {
        Account {
            email: "bookstore-client@my-project.iam.gserviceaccount.com".into(),
            account_id: "bookstore-client".into(),
            project_id: "my-project".into(),
            unique_id: "123456789012345678901".into(),
            created: 1_700_000_000,
        }
    }

    #[test]
    fn key_files_have_every_google_field_and_a_matching_certificate() {
        for algorithm in [KeyAlgorithm::Rs256, KeyAlgorithm::Es256] {
            let base = KeyServerUrl::parse("http://127.0.0.1:9999/").unwrap();
            let new = new_key(&account(), algorithm, &base, 1_700_000_000).unwrap();
            let f = &new.key_file;
            assert_eq!(f.key_type, "service_account");
            assert_eq!(f.project_id, "my-project");
            assert_eq!(f.private_key_id, new.stored.key_id);
            assert_eq!(f.client_email, account().email);
            assert_eq!(f.client_id, "123456789012345678901");
            assert_eq!(f.auth_uri, "https://accounts.google.com/o/oauth2/auth");
            assert_eq!(f.token_uri, "https://oauth2.googleapis.com/token");
            assert_eq!(
                f.auth_provider_x509_cert_url,
                "https://www.googleapis.com/oauth2/v1/certs"
            );
            assert_eq!(
                f.client_x509_cert_url,
                "http://127.0.0.1:9999/robot/v1/metadata/x509/\
                 bookstore-client%40my-project.iam.gserviceaccount.com"
            );
            assert_eq!(f.universe_domain.as_deref(), Some("googleapis.com"));
            assert!(f.private_key.starts_with("-----BEGIN PRIVATE KEY-----"));

            // The stored public key, the certificate's key and the private key's are one key.
            let signer = jose::Signer::from_service_account(f).unwrap();
            assert_eq!(signer.default_algorithm(), algorithm.jose());
            let from_private = signer.public_key().unwrap().unwrap();
            let from_spki = jose::PublicKey::from_pem(&new.stored.public_key_pem).unwrap();
            let from_cert = jose::PublicKey::from_pem(&new.stored.certificate_pem).unwrap();
            assert_eq!(from_private, from_spki);
            assert_eq!(from_private, from_cert);
            assert!(!new.stored.public_key_pem.contains("PRIVATE"));
            assert!(!new.stored.certificate_pem.contains("PRIVATE"));

            let (_, pem) =
                x509_parser::pem::parse_x509_pem(new.stored.certificate_pem.as_bytes()).unwrap();
            let cert = pem.parse_x509().unwrap();
            assert_eq!(cert.validity().not_before.timestamp(), 1_700_000_000);
            assert!(cert.validity().not_after.timestamp() > 253_000_000_000);
            assert_eq!(cert.subject(), cert.issuer());
            assert!(cert.subject().to_string().contains(&account().email));
        }
    }

    #[test]
    fn key_file_slots_are_0600_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let new = new_key(&account(), KeyAlgorithm::Es256, &KeyServerUrl::default(), 1).unwrap();
        KeyFileSlot::create(&path)
            .unwrap()
            .write(&new.key_file)
            .unwrap();
        let read = std::fs::read_to_string(&path).unwrap();
        assert_eq!(ServiceAccountKey::from_json(&read).unwrap(), new.key_file);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            KeyFileSlot::create(&path),
            Err(IamError::KeyFileExists(p)) if p == path
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), read);
        assert!(matches!(
            KeyFileSlot::create(&dir.path().join("missing-dir/key.json")),
            Err(IamError::KeyFileWrite { .. })
        ));
    }
}
