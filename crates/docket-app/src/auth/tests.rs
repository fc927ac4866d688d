//! Tests of authentication: our own JWTs, expiry, bad signatures, `alg: none`, algorithm
//! confusion, Better Auth provisioning, JWKS verification (EdDSA, ES256, RS256) against an
//! in-test JWKS server, and personal access tokens.
//!
//! The PEM files in `testdata/` are throwaway keys generated with `openssl genpkey` for these
//! tests only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::{App, AuthConfig, FixedClock, Signup};
use docket_core::Zone;

const SECRET: &str = "test-secret-test-secret-test-secret";
const BETTER_AUTH: &str = "better-auth-secret-better-auth-secret";
const ED_PEM: &str = include_str!("testdata/ed25519.pem");
const EC_PEM: &str = include_str!("testdata/p256.pem");
const RSA_PEM: &str = include_str!("testdata/rsa2048.pem");

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

async fn app_with(config: AuthConfig) -> (App, Arc<FixedClock>) {
    let clock = Arc::new(FixedClock::new(t0()));
    let app = App::new(Arc::new(crate::testing::sqlite().await), config).with_clock(clock.clone());
    (app, clock)
}

async fn app() -> (App, Arc<FixedClock>) {
    app_with(AuthConfig::new(SECRET)).await
}

async fn signup(app: &App, email: &str) -> crate::Session {
    app.signup(Signup {
        email: Email::parse(email).unwrap(),
        password: Password::parse("correct horse").unwrap(),
        name: None,
        timezone: None,
    })
    .await
    .unwrap()
}

fn sign(
    alg: Algorithm,
    key: &EncodingKey,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn unauthorized(r: Result<User, AppError>) -> String {
    match r {
        Err(AppError::Unauthorized(why)) => why,
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn own_jwt_round_trips() {
    let (app, _) = app().await;
    let s = signup(&app, "ada@example.com").await;
    assert_eq!(s.expires_at.as_second(), t0().as_second() + 24 * 3600);
    let user = app.authenticate(&s.token).await.unwrap();
    assert_eq!(user.id, s.user.id);
    assert_eq!(user.name.as_str(), "ada");
}

#[tokio::test]
async fn expired_jwt_is_rejected() {
    let (app, clock) = app().await;
    let s = signup(&app, "ada@example.com").await;
    clock.set(Timestamp::from_second(t0().as_second() + 24 * 3600 + 31).unwrap());
    assert!(unauthorized(app.authenticate(&s.token).await).contains("expired"));
}

#[tokio::test]
async fn wrong_signature_and_wrong_issuer_are_rejected() {
    let (app, _) = app().await;
    let s = signup(&app, "ada@example.com").await;
    let claims = json!({"sub": s.user.id.to_string(), "iss": "docket", "iat": t0().as_second(), "exp": t0().as_second() + 600});
    let forged =
        sign(Algorithm::HS256, &EncodingKey::from_secret(b"not the secret"), None, &claims);
    assert!(unauthorized(app.authenticate(&forged).await).contains("signature"));

    let other_iss = json!({"sub": s.user.id.to_string(), "iss": "someone", "iat": 0, "exp": t0().as_second() + 600});
    let token =
        sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), None, &other_iss);
    unauthorized(app.authenticate(&token).await);

    // A tampered payload under the original signature.
    let parts: Vec<&str> = s.token.split('.').collect();
    let evil = URL_SAFE_NO_PAD.encode(json!({"sub": docket_ports::ids::new_id::<UserId>().to_string(), "iss": "docket", "iat": 0, "exp": t0().as_second() + 600}).to_string());
    unauthorized(app.authenticate(&format!("{}.{}.{}", parts[0], evil, parts[2])).await);
}

#[tokio::test]
async fn alg_none_and_garbage_are_rejected() {
    let (app, _) = app().await;
    let s = signup(&app, "ada@example.com").await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"sub": s.user.id.to_string(), "iss": "docket", "iat": 0, "exp": t0().as_second() + 600}).to_string());
    unauthorized(app.authenticate(&format!("{header}.{claims}.")).await);
    unauthorized(app.authenticate(&format!("{header}.{claims}")).await);
    unauthorized(app.authenticate("not-a-token").await);
    unauthorized(app.authenticate("").await);
    unauthorized(app.authenticate("a.b.c").await);
}

#[tokio::test]
async fn asymmetric_tokens_without_jwks_are_rejected() {
    let (app, _) = app().await;
    let key = EncodingKey::from_ed_pem(ED_PEM.as_bytes()).unwrap();
    let token = sign(
        Algorithm::EdDSA,
        &key,
        Some("k1"),
        &json!({"sub": "x", "exp": t0().as_second() + 600}),
    );
    assert!(unauthorized(app.authenticate(&token).await).contains("algorithm"));
}

#[tokio::test]
async fn better_auth_tokens_provision_a_user_once() {
    let mut config = AuthConfig::new(SECRET);
    config.better_auth_secret = Some(BETTER_AUTH.into());
    let (app, _) = app_with(config).await;
    let claims = json!({"sub": "ba-user-1", "email": "Grace@Example.com", "name": "Grace", "exp": t0().as_second() + 600, "aud": "http://localhost:3000"});
    let token =
        sign(Algorithm::HS256, &EncodingKey::from_secret(BETTER_AUTH.as_bytes()), None, &claims);
    let first = app.authenticate(&token).await.unwrap();
    assert_eq!(first.external_subject.as_deref(), Some("ba-user-1"));
    assert_eq!(first.email.as_ref().map(Email::as_str), Some("grace@example.com"));
    assert_eq!(first.name.as_str(), "Grace");
    let again = app.authenticate(&token).await.unwrap();
    assert_eq!(again.id, first.id);

    // An external identity claiming a local account's email gets its own account, unlinked.
    let local = signup(&app, "ada@example.com").await;
    let claims =
        json!({"sub": "ba-user-2", "email": "ada@example.com", "exp": t0().as_second() + 600});
    let token =
        sign(Algorithm::HS256, &EncodingKey::from_secret(BETTER_AUTH.as_bytes()), None, &claims);
    let other = app.authenticate(&token).await.unwrap();
    assert_ne!(other.id, local.user.id);
    assert_eq!(other.email, None);

    // Expired Better Auth tokens fail like our own.
    let expired = json!({"sub": "ba-user-1", "exp": t0().as_second() - 3600});
    let token =
        sign(Algorithm::HS256, &EncodingKey::from_secret(BETTER_AUTH.as_bytes()), None, &expired);
    assert!(unauthorized(app.authenticate(&token).await).contains("expired"));
}

/// A JWKS server on 127.0.0.1:0 that counts its fetches.
async fn jwks_server(set: serde_json::Value) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let set = set.clone();
            async move { axum::Json(set) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/.well-known/jwks.json"), hits)
}

fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

#[tokio::test]
async fn jwks_verifies_eddsa_es256_rs256_and_rejects_confusion() {
    let ed = EncodingKey::from_ed_pem(ED_PEM.as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PEM.as_bytes()).unwrap();
    let rsa = EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap();
    let ed_jwk = public_jwk(&ed, Algorithm::EdDSA, "ed");
    let set = JwkSet {
        keys: vec![
            ed_jwk.clone(),
            public_jwk(&ec, Algorithm::ES256, "ec"),
            public_jwk(&rsa, Algorithm::RS256, "rsa"),
            // A symmetric key in the set must never verify anything.
            public_jwk(&EncodingKey::from_secret(b"oct-secret"), Algorithm::HS256, "oct"),
        ],
    };
    let (url, hits) = jwks_server(serde_json::to_value(&set).unwrap()).await;
    let mut config = AuthConfig::new(SECRET);
    config.jwks = Some(Arc::new(docket_outbound::HttpJwks::new(url)));
    let (app, _) = app_with(config).await;
    let exp = t0().as_second() + 600;

    let mut ids = Vec::new();
    for (alg, key, kid) in [
        (Algorithm::EdDSA, &ed, "ed"),
        (Algorithm::ES256, &ec, "ec"),
        (Algorithm::RS256, &rsa, "rsa"),
    ] {
        let token = sign(alg, key, Some(kid), &json!({"sub": format!("idp|{kid}"), "exp": exp}));
        let user = app.authenticate(&token).await.unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(user.external_subject.as_deref(), Some(format!("idp|{kid}").as_str()));
        ids.push(user.id);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "keys are cached after the first fetch");

    // A key used with another key's kid: the signature cannot verify.
    let token = sign(Algorithm::ES256, &ec, Some("rsa"), &json!({"sub": "x", "exp": exp}));
    unauthorized(app.authenticate(&token).await);

    // HS256 with the Ed25519 public key as the secret (classic algorithm confusion).
    let AlgorithmParameters::OctetKeyPair(p) = &ed_jwk.algorithm else { panic!("not an OKP key") };
    let public = URL_SAFE_NO_PAD.decode(&p.x).unwrap();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public),
        Some("ed"),
        &json!({"sub": "x", "exp": exp}),
    );
    unauthorized(app.authenticate(&token).await);
    // HS256 signed with the JWKS's own symmetric key.
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"oct-secret"),
        Some("oct"),
        &json!({"sub": "x", "exp": exp}),
    );
    unauthorized(app.authenticate(&token).await);

    // Expired external tokens are rejected.
    let token = sign(
        Algorithm::EdDSA,
        &ed,
        Some("ed"),
        &json!({"sub": "idp|ed", "exp": t0().as_second() - 120}),
    );
    assert!(unauthorized(app.authenticate(&token).await).contains("expired"));

    // An unknown kid right after a fetch does not fetch again (at most one fetch per 30 s)…
    let token = sign(Algorithm::EdDSA, &ed, Some("rotated"), &json!({"sub": "idp|ed", "exp": exp}));
    unauthorized(app.authenticate(&token).await);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "refetches are throttled");
    // …but 30 s later it does, once.
    tokio::time::pause();
    tokio::time::advance(std::time::Duration::from_secs(31)).await;
    tokio::time::resume();
    unauthorized(app.authenticate(&token).await);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    unauthorized(app.authenticate(&token).await);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "refetches are throttled");
}

#[test]
fn jwk_algorithms_come_from_the_key_type() {
    let ed = EncodingKey::from_ed_pem(ED_PEM.as_bytes()).unwrap();
    assert_eq!(
        jwk_algorithm(&Jwk::from_encoding_key(&ed, Algorithm::EdDSA).unwrap()),
        Some(Algorithm::EdDSA)
    );
    let oct = Jwk::from_encoding_key(&EncodingKey::from_secret(b"k"), Algorithm::HS256).unwrap();
    assert_eq!(jwk_algorithm(&oct), None);
    // A declared alg that disagrees with the key type disqualifies the key.
    let mut lying = Jwk::from_encoding_key(&ed, Algorithm::EdDSA).unwrap();
    lying.common.key_algorithm = Some(jsonwebtoken::jwk::KeyAlgorithm::RS256);
    assert_eq!(jwk_algorithm(&lying), None);
    assert!(parse_jwks(b"not json").is_empty());
}

#[tokio::test]
async fn personal_access_tokens_round_trip_and_revoke() {
    let (app, clock) = app().await;
    let s = signup(&app, "ada@example.com").await;
    let created = app
        .create_token(
            &s.user,
            crate::NewToken { name: DisplayName::parse("cli").unwrap(), expires_at: None },
        )
        .await
        .unwrap();
    assert!(created.token.starts_with("dkt_"));
    assert_eq!(created.token.len(), 4 + 43);
    assert!(created.token.starts_with(&created.info.prefix));
    assert_eq!(app.authenticate(&created.token).await.unwrap().id, s.user.id);
    let listed = app.list_tokens(&s.user).await.unwrap();
    assert_eq!(listed, vec![created.info.clone()]);

    unauthorized(app.authenticate(&format!("{}x", created.token)).await);
    app.delete_token(&s.user, created.info.id).await.unwrap();
    unauthorized(app.authenticate(&created.token).await);
    assert!(matches!(
        app.delete_token(&s.user, created.info.id).await,
        Err(AppError::NotFound("token"))
    ));

    // An expiring token stops working at its expiry; one in the past cannot be made.
    let soon = Timestamp::from_second(t0().as_second() + 60).unwrap();
    let expiring = app.create_token_for(s.user.id, "ci", Some(soon)).await.unwrap();
    assert!(app.authenticate(&expiring.token).await.is_ok());
    clock.set(Timestamp::from_second(t0().as_second() + 61).unwrap());
    unauthorized(app.authenticate(&expiring.token).await);
    let past = app.create_token_for(s.user.id, "ci", Some(t0())).await;
    assert!(matches!(past, Err(AppError::Validation(e)) if e.0[0].field == "expires_at"));
    assert!(matches!(
        app.create_token_for(docket_ports::ids::new_id(), "ci", None).await,
        Err(AppError::NotFound("user"))
    ));
}

#[tokio::test]
async fn login_checks_the_password_and_hides_which_part_was_wrong() {
    let (app, _) = app().await;
    let s = signup(&app, "ada@example.com").await;
    let ok = app.login(" ADA@example.com", "correct horse").await.unwrap();
    assert_eq!(ok.user.id, s.user.id);
    let wrong = app.login("ada@example.com", "wrong horse").await.unwrap_err().to_string();
    let unknown = app.login("nobody@example.com", "correct horse").await.unwrap_err().to_string();
    let malformed = app.login("nobody", "correct horse").await.unwrap_err().to_string();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, malformed);
    let dup = app
        .signup(Signup {
            email: Email::parse("ada@example.com").unwrap(),
            password: Password::parse("another one").unwrap(),
            name: None,
            timezone: None,
        })
        .await;
    assert!(matches!(dup, Err(AppError::Conflict(_))));
}

#[tokio::test]
async fn admin_helpers_validate_raw_input() {
    let (app, _) = app().await;
    let user = app
        .create_user_admin("ops@example.com", "long enough", Some("Ops"), Some("Europe/Berlin"))
        .await
        .unwrap();
    assert_eq!(user.timezone.as_ref().map(Zone::name), Some("Europe/Berlin"));
    assert!(app.login("ops@example.com", "long enough").await.is_ok());
    let Err(AppError::Validation(e)) =
        app.create_user_admin("nope", "short", None, Some("Mars/Base")).await
    else {
        panic!("expected a validation error");
    };
    let fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["email", "password", "timezone"]);
    let t = app.create_token_for(user.id, "deploy", None).await.unwrap();
    assert_eq!(app.authenticate(&t.token).await.unwrap().id, user.id);
}
