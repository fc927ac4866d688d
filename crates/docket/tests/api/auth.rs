//! Accounts and authentication over HTTP: signup, login, me, personal access tokens, JWT
//! rejection cases (missing, expired, wrongly signed, `alg: none`), login rate limiting.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Db, Reply, TestServer};

const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

async fn server_with_known_secret() -> TestServer {
    TestServer::start_on(Db::Sqlite, vec![("DOCKET_JWT_SECRET".into(), SECRET.into())]).await
}

fn hs256(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode jwt")
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn assert_problem(r: &crate::support::Reply, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{}", r.text);
    assert_eq!(r.body["status"].as_u64(), Some(u64::from(status.as_u16())));
    assert!(r.body["title"].is_string());
}

/// POSTs `body` to `/api/auth/{action}` without a token.
async fn post_auth(s: &TestServer, action: &str, body: Value) -> Reply {
    s.request(Method::POST, &format!("/api/auth/{action}"), None, Some(body)).await
}

#[tokio::test]
async fn signup_login_me() {
    let s = TestServer::start().await;
    let r = post_auth(&s, "signup", json!({"email": " Ada@Example.com ", "password": "correct horse", "name": "Ada", "timezone": "Europe/Berlin"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["user"]["email"], "ada@example.com");
    assert_eq!(r.body["user"]["name"], "Ada");
    assert_eq!(r.body["user"]["timezone"], "Europe/Berlin");
    let token = r.body["token"].as_str().unwrap().to_owned();

    let me = s.get("/api/auth/me", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], "ada@example.com");
    assert!(me.body.get("password_hash").is_none() && !me.text.contains("argon2"));

    let login =
        post_auth(&s, "login", json!({"email": "ADA@example.com", "password": "correct horse"}))
            .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let t2 = login.body["token"].as_str().unwrap();
    assert_eq!(s.get("/api/auth/me", t2).await.status, StatusCode::OK);

    let dup =
        post_auth(&s, "signup", json!({"email": "ada@example.com", "password": "another one"}))
            .await;
    assert_problem(&dup, StatusCode::CONFLICT);
}

#[tokio::test]
async fn signup_validation_names_fields() {
    let s = TestServer::start().await;
    for (body, field) in [
        (json!({"email": "not-an-email", "password": "long enough"}), "email"),
        (json!({"email": "a@example.com", "password": "short"}), "password"),
        (
            json!({"email": "a@example.com", "password": "long enough", "timezone": "Mars/Base"}),
            "timezone",
        ),
        (json!({"email": "a@example.com", "password": "long enough", "name": ""}), "name"),
    ] {
        let r = post_auth(&s, "signup", body.clone()).await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<&str> = r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{body}: expected an error on {field}, got {}", r.text);
    }
}

#[tokio::test]
async fn wrong_credentials_are_401() {
    let s = TestServer::start().await;
    s.signup("bob@example.com").await;
    for body in [
        json!({"email": "bob@example.com", "password": "wrong password"}),
        json!({"email": "nobody@example.com", "password": "correct horse battery"}),
    ] {
        let r = post_auth(&s, "login", body).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn bad_tokens_are_401() {
    let s = server_with_known_secret().await;
    let (good, user_id) = s.signup("carol@example.com").await;
    assert_eq!(s.get("/api/tasks", &good).await.status, StatusCode::OK);

    let missing = s.request(Method::GET, "/api/tasks", None, None).await;
    assert_problem(&missing, StatusCode::UNAUTHORIZED);
    assert!(missing.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")));

    let claims = |exp: i64| json!({"sub": user_id, "iat": now() - 10, "exp": exp, "iss": "docket"});
    // Signed correctly: accepted, which proves the forged ones below fail for their flaw only.
    assert_eq!(
        s.get("/api/tasks", &hs256(&claims(now() + 600), SECRET)).await.status,
        StatusCode::OK
    );
    let expired = hs256(&claims(now() - 600), SECRET);
    let wrong_key = hs256(&claims(now() + 600), "another-secret-that-is-long-enough-987654321");
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(now() + 600).to_string());
    let alg_none = format!("{header}.{payload}.");
    let tampered = {
        let good = hs256(&claims(now() + 600), SECRET);
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(
            json!({"sub": uuid::Uuid::now_v7().to_string(), "iat": now(), "exp": now() + 600})
                .to_string(),
        );
        parts.join(".")
    };
    for (name, token) in [
        ("expired", expired),
        ("wrong key", wrong_key),
        ("alg none", alg_none),
        ("tampered", tampered),
        ("garbage", "not.a.token".to_owned()),
        ("unknown pat", "dkt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
    ] {
        let r = s.get("/api/tasks", &token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.text);
    }
    // A scheme other than Bearer is refused too.
    let basic = s
        .http
        .get(format!("{}/api/tasks", s.url))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn personal_access_tokens() {
    let s = TestServer::start().await;
    let (jwt, _) = s.signup("dave@example.com").await;
    let created = s.post("/api/auth/tokens", &jwt, json!({"name": "laptop"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let pat = created.body["token"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/api/auth/me", &pat).await.body["email"], "dave@example.com");

    let list = s.get("/api/auth/tokens", &jwt).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.text.contains(&pat), "a listed token must not reveal its secret");
    assert!(list.text.contains("laptop"));

    let bad = s.post("/api/auth/tokens", &jwt, json!({"name": ""})).await;
    assert_problem(&bad, StatusCode::UNPROCESSABLE_ENTITY);

    let del = s.delete(&format!("/api/auth/tokens/{id}"), &jwt).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
    assert_eq!(s.get("/api/auth/me", &pat).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.delete(&format!("/api/auth/tokens/{id}"), &jwt).await.status,
        StatusCode::NOT_FOUND
    );

    // Another user cannot revoke someone else's token.
    let other = s.post("/api/auth/tokens", &jwt, json!({"name": "second"})).await;
    let other_id = other.body["id"].as_str().unwrap().to_owned();
    let (mallory, _) = s.signup("mallory@example.com").await;
    assert_eq!(
        s.delete(&format!("/api/auth/tokens/{other_id}"), &mallory).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/api/auth/me", other.body["token"].as_str().unwrap()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn login_is_rate_limited() {
    let s = TestServer::start().await;
    s.signup("erin@example.com").await;
    let mut limited = None;
    for _ in 0..30 {
        let r = post_auth(
            &s,
            "login",
            json!({"email": "erin@example.com", "password": "wrong password"}),
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = limited.expect("30 failed logins in a row were never rate limited");
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()));
}
