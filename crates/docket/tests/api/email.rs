//! The email channel end to end: a real SMTP server (Python's `aiosmtpd`, installed by
//! `.ci/run` from PyPI, writing what it receives into a maildir) on 127.0.0.1, a reminder that
//! asks for email, and the message that arrives checked header by header. Without `aiosmtpd`
//! the test says it skipped, unless `CI` is set: then it fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::{Db, TestServer};

/// A running `aiosmtpd` and the maildir it delivers into; killed on drop.
struct SmtpServer {
    port: u16,
    maildir: PathBuf,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

fn aiosmtpd_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success())
}

impl SmtpServer {
    async fn start(test: &str) -> Option<SmtpServer> {
        if !aiosmtpd_available() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: python3 -m aiosmtpd must be installed when CI is set (.ci/run installs it)"
            );
            eprintln!("skipped {test}: python3 with aiosmtpd not found (pip install aiosmtpd)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        // aiosmtpd creates the maildir itself when it does not exist yet.
        let maildir = dir.path().join("maildir");
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("addr").port()
        };
        let child = tokio::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "aiosmtpd listens within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(SmtpServer { port, maildir, _child: child, _dir: dir })
    }

    /// Waits (at most 30 s) for `n` messages and returns them, oldest first by name.
    async fn messages(&self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = read_new(&self.maildir.join("new"));
            if got.len() >= n {
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "{} of {n} emails arrived", got.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn read_new(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
}

/// Adds an email reminder to `task` due `in_ms` from now; its id.
async fn email_reminder(s: &TestServer, token: &str, task: &str, in_ms: i64) -> String {
    s.remind_in(token, task, in_ms, &["email"]).await.id()
}

/// The value of header `name` in a raw message (unfolded), if present.
fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\n\n").next().unwrap_or_default().replace("\r\n", "\n");
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

#[tokio::test]
async fn a_reminder_email_arrives_at_the_owners_address() {
    let Some(smtp) = SmtpServer::start("a_reminder_email_arrives_at_the_owners_address").await
    else {
        return;
    };
    let env = vec![
        ("DOCKET_SMTP_HOST".to_owned(), "127.0.0.1".to_owned()),
        ("DOCKET_SMTP_PORT".to_owned(), smtp.port.to_string()),
        ("DOCKET_SMTP_TLS".to_owned(), "none".to_owned()),
        ("DOCKET_SMTP_FROM".to_owned(), "Docket Reminders <reminders@docket.test>".to_owned()),
    ];
    let s = TestServer::start_on(Db::Sqlite, env).await;
    let (token, _) = s.signup("ada@example.com").await;
    let task = s.create("/api/tasks", &token, json!({ "title": "Renew the passport", "description": "Bring two photos.", "due_date": "2030-03-01T09:00:00Z", "timezone": "Europe/Berlin", })).await;
    let reminder = email_reminder(&s, &token, &task, 300).await;

    let messages = smtp.messages(1).await;
    let m = &messages[0];
    assert_eq!(header(m, "X-RcptTo").as_deref(), Some("ada@example.com"), "{m}");
    assert_eq!(header(m, "X-MailFrom").as_deref(), Some("reminders@docket.test"), "{m}");
    assert_eq!(header(m, "To").as_deref(), Some("ada@example.com"), "{m}");
    assert_eq!(
        header(m, "From").as_deref(),
        Some("\"Docket Reminders\" <reminders@docket.test>"),
        "{m}"
    );
    assert_eq!(header(m, "Subject").as_deref(), Some("Reminder: Renew the passport"), "{m}");
    assert!(header(m, "Content-Type").unwrap_or_default().starts_with("text/plain"), "{m}");
    // Quoted-printable soft line breaks joined (the only encoding plain ASCII text can get).
    let body = m.split_once("\n\n").map(|(_, b)| b).unwrap_or_default().replace("=\n", "");
    assert!(body.contains("Renew the passport"), "{m}");
    // 09:00 UTC on 1 March is 10:00 in Berlin.
    assert!(body.contains("Reminder: due 2030-03-01 10:00 (Europe/Berlin)"), "{m}");
    assert!(body.contains("Bring two photos."), "{m}");
    assert!(body.contains(&reminder), "{m}");

    // One email per reminder: nothing else arrives, and the reminder is fired, not failed.
    // A marker: a second reminder on the same path. Anything more the first one caused is
    // enqueued before the marker's delivery and claimed in the same round or an earlier one,
    // and the worker counts a round's deliveries only once all its sends have finished. So
    // once the marker's email is here and two deliveries are counted, every email the first
    // reminder was going to cause is in the maildir.
    let marker = email_reminder(&s, &token, &task, 100).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let arrived = read_new(&smtp.maildir.join("new")).iter().any(|m| m.contains(&marker));
        let metrics = s.request(reqwest::Method::GET, "/metrics", None, None).await.text;
        let delivered: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("docket_delivery_attempts_total{"))
            .filter(|l| l.contains("channel=\"email\"") && l.contains("outcome=\"delivered\""))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum();
        if arrived && delivered >= 2.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the marker's email is delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = s.get(&format!("/api/tasks/{task}/reminders"), &token).await;
    let reminders = r.body.as_array().cloned().unwrap_or_default();
    let messages = read_new(&smtp.maildir.join("new"));
    let of = |id: &str| messages.iter().filter(|m| m.contains(id)).count();
    assert_eq!((of(&reminder), of(&marker), messages.len()), (1, 1, 2));
    let first = reminders.iter().find(|x| x["id"] == reminder.as_str()).expect("listed");
    assert_eq!(first["status"], "fired", "{reminders:?}");
    assert!(first["last_error"].is_null(), "{reminders:?}");
}
