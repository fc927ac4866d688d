//! Credentials: password hashing, our own session JWTs, personal access tokens and external
//! identity (Better Auth's shared-secret HS256 JWTs, or JWTs verified against a JWKS URL).
//!
//! `authenticate` accepts exactly these and rejects everything else with `Unauthorized`:
//! * a PAT (`dkt_…`), looked up by its SHA-256 hash;
//! * an HS256 JWT signed with our `jwt_secret` and issued by us (`iss`), naming a user id;
//! * an HS256 JWT signed with `better_auth_secret`, whose `sub` provisions a user;
//! * an EdDSA, ES256 or RS256 JWT verified with the JWKS key named by its `kid`.
//!
//! The accepted algorithm is decided by which key verifies, never by the token alone: an HS256
//! token is only ever checked against the shared secrets and an asymmetric one only against
//! JWKS keys of its own type (symmetric JWKS keys are ignored), so `alg: none` and algorithm
//! confusion fail. Expiry is checked against the app's clock, not the system's.
//! Nothing here logs a token, a password or an email.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use docket_core::{DisplayName, Email, NewUser, Password, Timestamp, User, UserId};
use docket_ports::JwksSource;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::App;
use crate::error::AppError;

/// What personal access tokens start with, so they are told apart from JWTs (and found by
/// secret scanners).
pub const PAT_PREFIX: &str = "dkt_";

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 30;
/// A JWKS is refetched for an unknown `kid` at most this often.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);

/// How the app checks and issues credentials.
#[derive(Debug)]
pub struct AuthConfig {
    /// Signs and verifies our own session JWTs (HS256). Use at least 32 random bytes.
    pub jwt_secret: SecretString,
    /// How long a session JWT from signup or login lives (default 24 h).
    pub token_ttl: Duration,
    /// Better Auth's `BETTER_AUTH_SECRET`: HS256 JWTs signed with it are accepted and their
    /// `sub` provisions a user.
    pub better_auth_secret: Option<SecretString>,
    /// Where the JWKS whose EdDSA, ES256 and RS256 keys verify external JWTs comes from
    /// (`docket_outbound::HttpJwks` for a URL).
    pub jwks: Option<Arc<dyn JwksSource>>,
    /// The `iss` of our own JWTs (default `docket`).
    pub jwt_issuer: String,
}

impl AuthConfig {
    /// A config with our own JWTs only: 24 h sessions, issuer `docket`.
    pub fn new(jwt_secret: impl Into<SecretString>) -> AuthConfig {
        AuthConfig {
            jwt_secret: jwt_secret.into(),
            token_ttl: Duration::from_secs(24 * 3600),
            better_auth_secret: None,
            jwks: None,
            jwt_issuer: "docket".to_owned(),
        }
    }
}

/// The verification state built once from an [`AuthConfig`].
pub(crate) struct Auth {
    config: AuthConfig,
    own_encoding: EncodingKey,
    own_decoding: DecodingKey,
    better_auth: Option<DecodingKey>,
    jwks: Option<Jwks>,
}

impl Auth {
    pub(crate) fn new(config: AuthConfig) -> Auth {
        let secret = config.jwt_secret.expose_secret().as_bytes();
        let better_auth = config
            .better_auth_secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes()));
        let jwks = config.jwks.clone().map(Jwks::new);
        Auth {
            own_encoding: EncodingKey::from_secret(secret),
            own_decoding: DecodingKey::from_secret(secret),
            better_auth,
            jwks,
            config,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct OwnClaims {
    sub: String,
    iss: String,
    iat: i64,
    exp: i64,
}

/// The claims we read from an external identity provider's token.
#[derive(Debug, Deserialize)]
struct ExternalClaims {
    sub: String,
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    // Expiry is checked against the app's clock (see `check_times`); `aud` is not configured.
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "sub"]);
    v
}

fn check_times(exp: f64, nbf: Option<f64>, now: Timestamp) -> Result<(), AppError> {
    let now = now.as_second() as f64;
    if exp + (LEEWAY_SECS as f64) <= now {
        return Err(AppError::unauthorized("token has expired; log in again"));
    }
    if nbf.is_some_and(|nbf| nbf - (LEEWAY_SECS as f64) > now) {
        return Err(AppError::unauthorized("token is not valid yet"));
    }
    Ok(())
}

fn jwt_error(e: &jsonwebtoken::errors::Error) -> AppError {
    let why = match e.kind() {
        ErrorKind::InvalidSignature => "token signature does not verify",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm is not accepted"
        }
        ErrorKind::InvalidIssuer => "token was issued by someone else",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim (exp, sub)",
        _ => "token is malformed",
    };
    AppError::unauthorized(why)
}

/// The SHA-256 of a token, hex: what the store keeps instead of the token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh personal access token: `dkt_` and 32 random bytes, base64url.
pub(crate) fn new_pat() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PAT_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Hashes a password with argon2id (default parameters, random salt) off the async threads.
pub(crate) async fn hash_password(password: Password) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("failed to hash a password: {e}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("password hashing task failed: {e}"))?
    .map_err(AppError::Internal)
}

/// A hash of a password nobody knows, verified against when the account does not exist or
/// has no password, so such a login costs the same as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random: [u8; 16] = rand::random();
        Argon2::default()
            .hash_password(hex::encode(random).as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Checks `password` against `hash` (or the dummy hash when there is none) off the async
/// threads; true only for a real hash that matches.
pub(crate) async fn verify_password(
    password: String,
    hash: Option<String>,
) -> Result<bool, AppError> {
    tokio::task::spawn_blocking(move || {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
        let ok = Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok();
        real && ok
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("password check task failed: {e}")))
}

impl App {
    /// Issues one of our own session JWTs for `user`; returns it with its expiry.
    pub(crate) fn issue_jwt(&self, user: UserId) -> Result<(String, Timestamp), AppError> {
        let now = self.clock.now();
        let ttl = i64::try_from(self.auth.config.token_ttl.as_secs()).unwrap_or(i64::MAX / 4);
        let exp = now.as_second().saturating_add(ttl);
        let claims = OwnClaims {
            sub: user.to_string(),
            iss: self.auth.config.jwt_issuer.clone(),
            iat: now.as_second(),
            exp,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.auth.own_encoding)
                .map_err(|e| anyhow::anyhow!("failed to sign a session token: {e}"))?;
        let expires_at = Timestamp::from_second(exp)
            .map_err(|e| anyhow::anyhow!("session expiry out of range: {e}"))?;
        Ok((token, expires_at))
    }

    /// The user a bearer credential (JWT or PAT, without the `Bearer ` prefix) belongs to.
    #[tracing::instrument(name = "authenticate", skip_all, fields(auth.kind))]
    pub async fn authenticate(&self, bearer: &str) -> Result<User, AppError> {
        let token = bearer.trim();
        if token.is_empty() {
            return Err(AppError::unauthorized("missing bearer token"));
        }
        if token.starts_with(PAT_PREFIX) {
            tracing::Span::current().record("auth.kind", "pat");
            let now = self.clock.now();
            return self
                .store
                .user_by_token_hash(&hash_token(token), now)
                .await?
                .ok_or_else(|| AppError::unauthorized("token is unknown, revoked or expired"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            AppError::unauthorized("token is neither a JWT nor a personal access token")
        })?;
        match header.alg {
            Algorithm::HS256 => self.authenticate_hs256(token).await,
            Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256 => {
                tracing::Span::current().record("auth.kind", "jwks");
                let Some(jwks) = &self.auth.jwks else {
                    return Err(AppError::unauthorized("token algorithm is not accepted"));
                };
                let key = jwks.key_for(header.kid.as_deref(), header.alg).await?;
                let data =
                    jsonwebtoken::decode::<ExternalClaims>(token, &key, &validation(header.alg))
                        .map_err(|e| jwt_error(&e))?;
                self.provision(data.claims).await
            }
            _ => Err(AppError::unauthorized("token algorithm is not accepted")),
        }
    }

    async fn authenticate_hs256(&self, token: &str) -> Result<User, AppError> {
        let mut own = validation(Algorithm::HS256);
        own.set_issuer(&[&self.auth.config.jwt_issuer]);
        own.set_required_spec_claims(&["exp", "sub", "iss"]);
        match jsonwebtoken::decode::<OwnClaims>(token, &self.auth.own_decoding, &own) {
            Ok(data) => {
                tracing::Span::current().record("auth.kind", "jwt");
                check_times(data.claims.exp as f64, None, self.clock.now())?;
                let id: UserId = data
                    .claims
                    .sub
                    .parse()
                    .map_err(|_| AppError::unauthorized("token names no user"))?;
                self.store
                    .user_by_id(id)
                    .await?
                    .ok_or_else(|| AppError::unauthorized("token's user no longer exists"))
            }
            Err(e) if *e.kind() == ErrorKind::InvalidSignature => {
                let Some(key) = &self.auth.better_auth else {
                    return Err(jwt_error(&e));
                };
                tracing::Span::current().record("auth.kind", "better_auth");
                let data = jsonwebtoken::decode::<ExternalClaims>(
                    token,
                    key,
                    &validation(Algorithm::HS256),
                )
                .map_err(|e| jwt_error(&e))?;
                self.provision(data.claims).await
            }
            Err(e) => Err(jwt_error(&e)),
        }
    }

    /// The user of an external identity, created on first sight.
    async fn provision(&self, claims: ExternalClaims) -> Result<User, AppError> {
        let now = self.clock.now();
        check_times(claims.exp, claims.nbf, now)?;
        let subject = claims.sub.trim();
        if subject.is_empty() || subject.len() > 255 {
            return Err(AppError::unauthorized("token has no usable subject"));
        }
        let email = claims.email.as_deref().and_then(|e| Email::parse(e).ok());
        let name = claims
            .name
            .as_deref()
            .and_then(|n| DisplayName::parse(n).ok())
            .or_else(|| email.as_ref().map(DisplayName::from_email))
            .map_or_else(|| DisplayName::parse("user"), Ok)
            .map_err(|e| anyhow::anyhow!("default display name rejected: {e}"))?;
        let new = NewUser {
            email,
            name,
            timezone: None,
            password_hash: None,
            external_subject: Some(subject.to_owned()),
        };
        match self.store.user_for_subject(new.clone(), now).await {
            // The email belongs to another account: never link accounts by email (that would
            // hand the account to whoever controls the identity provider), go without it.
            Err(docket_ports::StoreError::Conflict(_)) if new.email.is_some() => {
                let new = NewUser { email: None, ..new };
                Ok(self.store.user_for_subject(new, now).await?)
            }
            other => Ok(other?),
        }
    }
}

/// A verification key from the JWKS, with the one algorithm it may verify.
#[derive(Clone)]
struct JwksKey {
    kid: Option<String>,
    alg: Algorithm,
    key: Arc<DecodingKey>,
}

/// The JWKS key cache: keys by `kid`, refetched on an unknown `kid` at most every 30 s.
struct Jwks {
    source: Arc<dyn JwksSource>,
    keys: std::sync::RwLock<Vec<JwksKey>>,
    /// When the set was last fetched; held across a fetch so concurrent misses fetch once.
    last_fetch: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Jwks {
    fn new(source: Arc<dyn JwksSource>) -> Jwks {
        Jwks {
            source,
            keys: std::sync::RwLock::new(Vec::new()),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    fn lookup(&self, kid: Option<&str>) -> Option<JwksKey> {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match kid {
            Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned(),
            // A token without `kid` is only unambiguous against a one-key set.
            None if keys.len() == 1 => keys.first().cloned(),
            None => None,
        }
    }

    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, AppError> {
        let found = match self.lookup(kid) {
            Some(k) => Some(k),
            None => self.refetch(kid).await,
        };
        let key =
            found.ok_or_else(|| AppError::unauthorized("token is signed with an unknown key"))?;
        if key.alg != alg {
            return Err(AppError::unauthorized("token algorithm does not match its key"));
        }
        Ok(key.key)
    }

    async fn refetch(&self, kid: Option<&str>) -> Option<JwksKey> {
        let mut last = self.last_fetch.lock().await;
        // Another request may have refreshed the set while this one waited.
        if let Some(k) = self.lookup(kid) {
            return Some(k);
        }
        if last.is_some_and(|t| t.elapsed() < JWKS_MIN_REFETCH) {
            return None;
        }
        *last = Some(tokio::time::Instant::now());
        match self.source.fetch().await.map(|body| parse_jwks(&body)) {
            Ok(keys) => {
                tracing::debug!(jwks.keys = keys.len(), "fetched the JWKS");
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
            }
            Err(e) => tracing::warn!(error = %e, "cannot fetch the JWKS"),
        }
        self.lookup(kid)
    }
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

/// The usable verification keys of a JWKS document; keys of other kinds are skipped one by one
/// (a set may mix in keys we do not support).
fn parse_jwks(body: &[u8]) -> Vec<JwksKey> {
    let Ok(set) = serde_json::from_slice::<RawJwkSet>(body) else {
        return Vec::new();
    };
    set.keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|jwk| {
            let alg = jwk_algorithm(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(JwksKey { kid: jwk.common.key_id.clone(), alg, key: Arc::new(key) })
        })
        .collect()
}

/// The one algorithm a JWK may verify, from its key type; `None` for keys we never accept
/// (symmetric `oct` keys, encryption keys, other curves), and when a declared `alg` disagrees.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(alg),
        Some(declared) => {
            (declared.to_string().parse::<Algorithm>().ok() == Some(alg)).then_some(alg)
        }
    }
}

#[cfg(test)]
mod tests;
