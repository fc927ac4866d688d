//! Acknowledged means durable: SIGKILL the real server in the middle of concurrent creates,
//! restart it on the same database, and find every task that was answered 201.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Db, TestServer, postgres_url};

async fn kill_mid_load_loses_nothing(db: Db) {
    let mut server = TestServer::start_on(db, Vec::new()).await;
    let (token, _) = server.signup("durable@example.com").await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/api/tasks", server.url);
    let mut workers = Vec::new();
    for w in 0..64 {
        let http = server.http.clone();
        let url = url.clone();
        let token = token.clone();
        let acked = acked.clone();
        let answered = answered.clone();
        workers.push(tokio::spawn(async move {
            for i in 0..20 {
                let body = json!({"title": format!("durable {w}-{i}"), "tags": ["crash"], "priority": "high"});
                match http.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(resp) if resp.status() == StatusCode::CREATED => {
                        if let Ok(v) = resp.json::<serde_json::Value>().await
                            && let Some(id) = v["id"].as_str()
                        {
                            acked.lock().expect("lock").push(id.to_owned());
                        }
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    // After the kill, requests fail to connect: the loop just ends.
                    _ => return,
                }
            }
        }));
    }
    // Kill once a good part of the load has been acknowledged, with more still in flight.
    while answered.load(Ordering::SeqCst) < 300 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    server.kill().await;
    for w in workers {
        w.await.expect("worker");
    }
    let acked: Vec<String> = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 300, "only {} creates were acknowledged", acked.len());
    assert!(acked.len() < 64 * 20, "the kill came after all the load; nothing was in flight");

    server.restart().await;
    let stored: HashSet<String> = server
        .all_tasks(&token)
        .await
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged tasks were lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_mid_load_loses_no_acknowledged_write() {
    kill_mid_load_loses_nothing(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_mid_load_loses_no_acknowledged_write() {
    if let Some(url) = postgres_url("postgres_kill_mid_load_loses_no_acknowledged_write") {
        kill_mid_load_loses_nothing(Db::Postgres(url)).await;
    }
}
