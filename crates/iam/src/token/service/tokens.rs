//! The tokens the service issues and signs: ID tokens and access tokens for accounts, and JWTs
//! signed with an account's server-managed key (`signJwt`).

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::super::rotation::KeyWindow;
use super::{ACCESS_TOKEN_PREFIX, ID_TOKEN_LIFETIME_SECS, TokenService, new_sealed_key};
use crate::ids::random_bytes;
use crate::model::Account;
use crate::store::db::{Violation, violation};
use crate::store::managed_keys::{
    access_token_owner, insert_access_token, insert_managed_key, managed_keys, purge_access_tokens,
};
use crate::store::{KeyOwner, ManagedKey};
use crate::{IamError, Result};

/// Expired access-token rows deleted at most per issued token.
const PURGE_BATCH: u32 = 100;

/// Token-service keys sign until this date when they do not rotate (account keys).
const FOREVER: u64 = i64::MAX as u64;

fn sha256(text: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes())
        .as_ref()
        .to_vec()
}

impl TokenService {
    /// Signs `claims` with the token service's current key: `(kid, JWT)`.
    fn sign_as_service(&self, claims: &Map<String, Value>) -> Result<(String, String)> {
        let (key, _) = self.token_keys(self.now())?;
        self.sign_with(key, claims)
    }

    /// Signs `claims` with `key` (RS256, the key's id as `kid`): `(kid, JWT)`.
    fn sign_with(&self, key: ManagedKey, claims: &Map<String, Value>) -> Result<(String, String)> {
        let signer = self.signer(&key)?;
        let token = signer.sign_jwt(
            Some(&key.key_id),
            jose::Algorithm::RS256,
            &Value::Object(claims.clone()),
        )?;
        Ok((key.key_id, token))
    }

    /// ID token signed by the token service: iss = issuer_url, aud = audience, sub = account.unique_id,
    /// azp = unique_id, email + email_verified only when include_email, iat/exp integers, exp = iat + 3600.
    pub fn issue_id_token(
        &self,
        account: &Account,
        audience: &str,
        include_email: bool,
    ) -> Result<String> {
        self.issue_id_token_with(account, audience, include_email, false)
    }

    /// [`issue_id_token`](Self::issue_id_token), with `azp` = the account's email instead of
    /// its unique id when `email_azp` (the IAM Credentials API's `useEmailAzp`).
    pub fn issue_id_token_with(
        &self,
        account: &Account,
        audience: &str,
        include_email: bool,
        email_azp: bool,
    ) -> Result<String> {
        let now = self.now();
        let mut claims = Map::new();
        claims.insert("iss".into(), self.inner.issuer.clone().into());
        claims.insert("aud".into(), audience.into());
        let azp = if email_azp {
            &account.email
        } else {
            &account.unique_id
        };
        claims.insert("azp".into(), azp.clone().into());
        claims.insert("sub".into(), account.unique_id.clone().into());
        if include_email {
            claims.insert("email".into(), account.email.clone().into());
            claims.insert("email_verified".into(), true.into());
        }
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + ID_TOKEN_LIFETIME_SECS).into());
        let (kid, token) = self.sign_as_service(&claims)?;
        tracing::debug!(%kid, email = %account.email, "ID token issued");
        Ok(token)
    }

    /// An access token for `account` (lifetime ≤ 3600 s, refused above). Returns (token, expires_at unix secs).
    ///
    /// The token is [`ACCESS_TOKEN_PREFIX`] and 32 random bytes in base64url; the store keeps
    /// its SHA-256 with the account, scopes and expiry (deleted with the account); up to 100
    /// expired rows are purged first. [`IamError::UnknownAccount`] when the account is gone,
    /// [`IamError::AccessTokenLifetime`] outside 1..=3600 s (whole seconds).
    pub fn issue_access_token(
        &self,
        account: &Account,
        scopes: &[String],
        lifetime: Duration,
    ) -> Result<(String, u64)> {
        let secs = lifetime.as_secs();
        if lifetime.subsec_nanos() != 0 || !(1..=ID_TOKEN_LIFETIME_SECS).contains(&secs) {
            return Err(IamError::AccessTokenLifetime { secs });
        }
        let now = self.now();
        let token = format!(
            "{ACCESS_TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
        );
        let expires = now + secs;
        let store = self.store()?;
        purge_access_tokens(&store, now, PURGE_BATCH)?;
        match insert_access_token(&store, &sha256(&token), &account.email, scopes, expires) {
            Ok(()) => Ok((token, expires)),
            Err(err) if violation(&err).is_some() => {
                Err(IamError::UnknownAccount(account.email.clone()))
            }
            Err(err) => Err(err),
        }
    }

    /// The account (still existing) and scopes an unexpired access token was issued to; Ok(None) when unknown/expired/account gone.
    pub fn access_token_owner(&self, bearer: &str) -> Result<Option<(Account, Vec<String>)>> {
        if !bearer.starts_with(ACCESS_TOKEN_PREFIX) || bearer.len() > 256 {
            return Ok(None);
        }
        let now = self.now();
        access_token_owner(&*self.store()?, &sha256(bearer), now)
    }

    /// Signs `claims` (a JSON object) with a server-managed key of `account` (created on first use, sealed
    /// with the KEK, published in that account's /robot/v1/metadata/x509 and /service_accounts/v1/jwk documents).
    /// Returns (kid, compact JWT). Validates nothing about the claims (the endpoint does).
    pub fn sign_jwt_as(
        &self,
        account: &Account,
        claims: &Map<String, Value>,
    ) -> Result<(String, String)> {
        let owner = KeyOwner::Account(account.email.clone());
        let now = self.now();
        let existing = managed_keys(&*self.store()?, &owner)?.pop();
        let key = {
            match existing {
                Some(key) => key,
                None => {
                    // Made before the connection is taken (RSA generation takes a while).
                    let mut fresh =
                        new_sealed_key(&self.inner.kek, owner.clone(), &account.email, now)?;
                    let store = self.store()?;
                    fresh.window = KeyWindow {
                        sign_from: now,
                        sign_until: FOREVER,
                        publish_until: FOREVER,
                    };
                    store.write(|tx| {
                        // Another server may have made one meanwhile: use it.
                        if let Some(key) = managed_keys(tx, &owner)?.pop() {
                            return Ok(key);
                        }
                        match insert_managed_key(tx, &fresh, &self.inner.kek) {
                            Ok(()) => {}
                            Err(err) if violation(&err) == Some(Violation::ForeignKey) => {
                                return Err(IamError::UnknownAccount(account.email.clone()));
                            }
                            Err(err) => return Err(err),
                        }
                        tracing::info!(kid = %fresh.key_id, email = %account.email, "server-managed account key created");
                        Ok(fresh.clone())
                    })?
                }
            }
        };
        self.sign_with(key, claims)
    }
}
