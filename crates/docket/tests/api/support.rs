//! Test harness: spawns the real `docket` binary on port 0 with a fresh database per test and
//! drives it over HTTP like any client.
//!
//! SQLite databases live in a per-test temp directory. PostgreSQL tests run when
//! `DOCKET_TEST_POSTGRES_URL` is set, each in a fresh database created for it; without the
//! variable they print why they skip, and with `CI` set they fail instead.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

/// Which database a test server runs on.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite,
    Postgres(String),
    /// A database URL used as is: a second server on another's database.
    Shared(String),
}

/// Stamps one test per database for `body(db, args…)`: `$sqlite` on SQLite, and `$postgres`
/// on PostgreSQL when [`postgres_url`] gives one (it says why it skips, and fails under `CI`).
macro_rules! on_each_database {
    ($(#[$attr:meta])* $sqlite:ident, $postgres:ident => $body:ident $(, $arg:expr)*) => {
        $(#[$attr])*
        async fn $sqlite() {
            $body($crate::support::Db::Sqlite $(, $arg)*).await;
        }

        $(#[$attr])*
        async fn $postgres() {
            if let Some(url) = $crate::support::postgres_url(stringify!($postgres)) {
                $body($crate::support::Db::Postgres(url) $(, $arg)*).await;
            }
        }
    };
}

pub(crate) use on_each_database;

/// The PostgreSQL URL tests should use, `None` (with a printed reason) when not configured.
/// Panics when `CI` is set and the variable is missing: CI must not silently skip.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("DOCKET_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: DOCKET_TEST_POSTGRES_URL must be set when CI is set"
            );
            eprintln!("skipped {test}: DOCKET_TEST_POSTGRES_URL not set");
            None
        }
    }
}

/// Creates a fresh, empty database next to the one `base` names and returns its URL.
pub async fn fresh_postgres_database(base: &str) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("PostgreSQL at DOCKET_TEST_POSTGRES_URL is reachable");
    let name = format!("docket_api_{}", uuid::Uuid::now_v7().simple());
    // The name is ours (a prefix and a UUID in hex), never input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("can create a test database");
    let (head, tail) = match base.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (base, String::new()),
    };
    let slash = head.rfind('/').expect("a PostgreSQL URL has a database path");
    format!("{}/{name}{tail}", &head[..slash])
}

pub struct TestServer {
    child: Option<tokio::process::Child>,
    pub url: String,
    pub database: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    extra_env: Vec<(String, String)>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `id` of the resource in the body.
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_else(|| panic!("no id in {}", self.text)).to_owned()
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_on(Db::Sqlite, Vec::new()).await
    }

    pub async fn start_on(db: Db, extra_env: Vec<(String, String)>) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("docket.db").display()),
            Db::Postgres(base) => fresh_postgres_database(&base).await,
            Db::Shared(url) => url,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let mut server =
            TestServer { child: None, url: String::new(), database, dir, http, extra_env };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_docket"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database", &self.database])
            .arg("--data-dir")
            .arg(self.dir.path())
            .env("DOCKET_LOG", "warn")
            .env_remove("DOCKET_JWT_SECRET")
            .env_remove("BETTER_AUTH_SECRET")
            .env_remove("DOCKET_JWKS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn docket serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("docket listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("docket serve exited before listening");
        })
        .await
        .expect("docket serve starts within 60 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.url = url;
        self.child = Some(child);
    }

    /// SIGKILLs the server: no shutdown code runs.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill the server");
            let _ = child.wait().await;
        }
    }

    /// Starts the server again on the same database and data directory.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::read(req.send().await.expect("request reaches the server")).await
    }

    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(token), Some(body)).await
    }

    /// POSTs `body` to `path`, asserts `201 Created` and returns the new resource's `id`.
    pub async fn create(&self, path: &str, token: &str, body: Value) -> String {
        let r = self.post(path, token, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "POST {path}: {}", r.text);
        r.id()
    }

    /// Adds a reminder to `task` at `in_ms` from now, on `channels` (the default when none),
    /// asserting `201 Created`.
    pub async fn remind_in(&self, token: &str, task: &str, in_ms: i64, channels: &[&str]) -> Reply {
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(in_ms);
        let mut body = json!({"trigger": {"at": at.to_string()}});
        if !channels.is_empty() {
            body["channels"] = json!(channels);
        }
        let r = self.post(&format!("/api/tasks/{task}/reminders"), token, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(Method::PATCH, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    /// Signs up a new account and returns `(token, user_id)`.
    pub async fn signup(&self, email: &str) -> (String, String) {
        let r = self
            .request(
                Method::POST,
                "/api/auth/signup",
                None,
                Some(json!({"email": email, "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "signup: {}", r.text);
        let token = r.body["token"].as_str().expect("token").to_owned();
        let id = r.body["user"]["id"].as_str().expect("user id").to_owned();
        (token, id)
    }

    /// Every task of the user, paging through the whole list.
    pub async fn all_tasks(&self, token: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/tasks?status=all&limit=200&cursor={c}"),
                None => "/api/tasks?status=all&limit=200".to_owned(),
            };
            let r = self.get(&path, token).await;
            assert_eq!(r.status, StatusCode::OK, "list: {}", r.text);
            out.extend(r.body["items"].as_array().expect("items").iter().cloned());
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

impl TestServer {
    /// Sends SIGTERM and waits (up to 30 s) for the server to exit; returns whether it exited
    /// successfully.
    pub async fn terminate(&mut self) -> bool {
        let mut child = self.child.take().expect("a running server");
        let pid = child.id().expect("a running server has a pid");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("the server exits within 30 s of SIGTERM")
            .expect("wait for the server");
        status.success()
    }
}

/// Every entry of the caller's audit log, oldest first, paging through `/api/activity` with
/// its cursor.
pub async fn all_activity(s: &TestServer, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/api/activity?limit=200".to_owned();
    loop {
        let r = s.get(&path, token).await;
        assert_eq!(r.status, StatusCode::OK, "activity: {}", r.text);
        out.extend(r.body["items"].as_array().expect("items").iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/activity?limit=200&cursor={c}"),
            None => return out,
        }
    }
}

/// Runs the `docket` binary (the CLI) with `args` and `envs`, without the caller's own
/// `DOCKET_TOKEN`, `DOCKET_URL` or `DOCKET_DATABASE_URL`.
pub fn docket(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_docket"));
    cmd.args(args)
        .env_remove("DOCKET_TOKEN")
        .env_remove("DOCKET_URL")
        .env_remove("DOCKET_DATABASE_URL");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run docket")
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
