//! The CLI end to end: `user add` and `token create` on the database, then the client
//! commands `add`, `ls`, `done`, `rm` against a running server, in table and JSON form.

use serde_json::Value;

use crate::support::{TestServer, docket, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_client_commands() {
    let server = TestServer::start().await;
    let db = server.database.clone();
    let url = server.url.clone();
    tokio::task::spawn_blocking(move || {
        let o = docket(&["migrate", "--database", &db], &[]);
        assert!(o.status.success(), "migrate: {}", stderr(&o));

        let o = docket(
            &["user", "add", "--database", &db, "--email", "Cli@Example.com", "--name", "Cli User"],
            &[("DOCKET_PASSWORD", "long enough pw")],
        );
        assert!(o.status.success(), "user add: {}", stderr(&o));
        let o = docket(
            &[
                "user",
                "add",
                "--database",
                &db,
                "--email",
                "cli@example.com",
                "--password",
                "long enough pw",
            ],
            &[],
        );
        assert!(!o.status.success(), "a second account with the same email is refused");
        let o = docket(
            &["user", "add", "--database", &db, "--email", "bad", "--password", "short"],
            &[],
        );
        assert!(!o.status.success());
        assert!(stderr(&o).contains("email") && stderr(&o).contains("password"), "{}", stderr(&o));

        let o = docket(
            &["token", "create", "--database", &db, "--email", "cli@example.com", "--name", "ci"],
            &[],
        );
        assert!(o.status.success(), "token create: {}", stderr(&o));
        let token = stdout(&o).trim().to_owned();
        assert!(!token.is_empty() && !token.contains(' '), "the token alone is printed: {token:?}");
        let o =
            docket(&["token", "create", "--database", &db, "--email", "nobody@example.com"], &[]);
        assert!(!o.status.success());

        let env = [("DOCKET_URL", url.as_str()), ("DOCKET_TOKEN", token.as_str())];
        let o = docket(
            &[
                "add",
                "Water the plants",
                "--priority",
                "high",
                "--tag",
                "home",
                "--due",
                "2026-12-01T09:00:00Z",
                "--json",
            ],
            &env,
        );
        assert!(o.status.success(), "add: {}", stderr(&o));
        let task: Value = serde_json::from_slice(&o.stdout).expect("add --json prints the task");
        let id = task["id"].as_str().unwrap().to_owned();
        assert_eq!(task["priority"], "high");

        let o = docket(&["add", "Second task"], &env);
        assert!(stdout(&o).starts_with("added "), "{}", stdout(&o));
        let o = docket(&["add", ""], &env);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("title"), "validation errors are shown: {}", stderr(&o));

        let o = docket(&["ls"], &env);
        assert!(o.status.success(), "ls: {}", stderr(&o));
        let table = stdout(&o);
        assert!(
            table.contains("Water the plants")
                && table.contains("Second task")
                && table.contains("#home"),
            "{table}"
        );

        let o = docket(&["done", &id], &env);
        assert!(o.status.success(), "done: {}", stderr(&o));
        let o = docket(&["ls", "--json"], &env);
        let page: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "ls shows pending tasks by default");
        let o = docket(&["ls", "--status", "completed", "--json"], &env);
        let page: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(page["items"][0]["id"], id.as_str());

        let o = docket(&["rm", &id], &env);
        assert!(o.status.success(), "rm: {}", stderr(&o));
        let o = docket(&["rm", &id], &env);
        assert!(!o.status.success(), "removing twice fails");
        assert!(stderr(&o).contains("404"), "{}", stderr(&o));
        let o = docket(&["done", "not-an-id"], &env);
        assert!(!o.status.success());

        let o = docket(&["ls"], &[("DOCKET_URL", url.as_str())]);
        assert!(!o.status.success() && stderr(&o).contains("token"), "missing token is explained");
        let o = docket(&["ls"], &[("DOCKET_URL", url.as_str()), ("DOCKET_TOKEN", "dkt_wrong")]);
        assert!(!o.status.success() && stderr(&o).contains("401"), "{}", stderr(&o));
    })
    .await
    .expect("cli steps");
}

/// `docket bench` runs every phase end to end (tiny sizes: this checks it works, not how fast).
#[test]
fn bench_runs_every_phase() {
    let o = docket(
        &[
            "bench",
            "--connections",
            "4",
            "--seconds",
            "1",
            "--list-tasks",
            "100",
            "--event-writes",
            "40",
            "--bus-events",
            "1000",
            "--reminders",
            "2000",
            "--reminder-rate",
            "2000",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "bench failed: {}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).expect("JSON report");
    let phases = report["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(phases.len(), 7, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("next instance")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("event latency")), "{names:?}");
    for p in phases {
        assert_eq!(p["errors"], 0, "{p}");
        assert!(p["requests"].as_u64() > Some(0), "{p}");
        assert!(p["per_second"].as_f64() > Some(0.0), "{p}");
    }
    let reminders = &report["reminders"];
    assert_eq!(reminders["reminders"], 2000, "{reminders}");
    assert!(reminders["restart_to_ready_ms"].as_f64() > Some(0.0), "{reminders}");
    assert!(reminders["lateness_p99_ms"].as_f64().is_some(), "{reminders}");
    let latency = phases.iter().find(|p| p["name"].as_str().unwrap_or("").starts_with("event"));
    assert_eq!(latency.expect("event phase")["requests"], 40);
}
