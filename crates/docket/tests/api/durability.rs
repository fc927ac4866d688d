//! Acknowledged means durable: SIGKILL the real server in the middle of concurrent writes,
//! restart it on the same database, and find every task that was answered 201, and, once the
//! audit consumer has caught up, exactly one audit entry per acknowledged operation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Db, TestServer, all_activity, on_each_database};

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

on_each_database!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    sqlite_kill_mid_load_loses_no_acknowledged_write,
    postgres_kill_mid_load_loses_no_acknowledged_write => kill_mid_load_loses_nothing
);

/// How long the audit consumer may take, after the restart, to deliver everything.
const AUDIT_CATCH_UP: Duration = Duration::from_secs(60);

/// A task write a client makes, named for the audit event it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Complete,
    Reopen,
    Delete,
}

impl Op {
    fn event_type(self) -> &'static str {
        match self {
            Op::Create => "com.todo.task.created",
            Op::Update => "com.todo.task.updated",
            Op::Complete => "com.todo.task.completed",
            Op::Reopen => "com.todo.task.reopened",
            Op::Delete => "com.todo.task.deleted",
        }
    }
}

/// What follows the create of a client's `n`th task; every step changes the task, so every
/// acknowledged step is exactly one event.
const PLANS: [&[Op]; 4] = [
    &[Op::Update, Op::Complete, Op::Reopen, Op::Update, Op::Complete, Op::Delete],
    &[Op::Complete, Op::Reopen, Op::Delete],
    &[Op::Update, Op::Complete],
    &[Op::Update],
];

/// One task as its client saw it. `label` is the title it was created with, unique per test,
/// so its `created` entry can be found even when the create's answer never arrived.
#[derive(Debug)]
struct Tracked {
    user: usize,
    label: String,
    id: Option<String>,
    /// The operations answered 2xx, in the order they were made.
    acked: Vec<Op>,
    /// The operation whose answer never came (or was an error), after which the task's state
    /// is unknown and the client leaves it alone: it may or may not have happened.
    uncertain: Option<Op>,
    completed: bool,
    deleted: bool,
}

impl Tracked {
    fn new(user: usize, label: String) -> Tracked {
        Tracked {
            user,
            label,
            id: None,
            acked: Vec::new(),
            uncertain: None,
            completed: false,
            deleted: false,
        }
    }

    /// Whether its state is known and it still exists, so it can take another operation.
    fn usable(&self) -> bool {
        self.id.is_some() && self.uncertain.is_none() && !self.deleted
    }
}

/// Makes `op` on `t` against the server at `base`, recording the outcome in `t`; returns
/// whether it was acknowledged with everything the next operation needs.
async fn perform(http: &reqwest::Client, base: &str, token: &str, t: &mut Tracked, op: Op) -> bool {
    let id = t.id.clone().unwrap_or_default();
    let task = format!("{base}/api/tasks/{id}");
    let req = match op {
        Op::Create => http.post(format!("{base}/api/tasks")).json(&json!({"title": t.label})),
        Op::Update => {
            // A new title every time: an update that changes nothing makes no event.
            let title = format!("{} v{}", t.label, t.acked.len());
            http.patch(&task).json(&json!({"title": title}))
        }
        Op::Complete => http.post(format!("{task}/complete")).json(&json!({})),
        Op::Reopen => http.post(format!("{task}/reopen")).json(&json!({})),
        Op::Delete => http.delete(&task),
    };
    let resp = match req.bearer_auth(token).send().await {
        Ok(resp) => resp,
        // The server died before or while answering.
        Err(_) => {
            t.uncertain = Some(op);
            return false;
        }
    };
    let status = resp.status();
    assert!(
        !status.is_client_error(),
        "{op:?} of '{}' answered {status}: the test made a request the server rejects",
        t.label
    );
    if !status.is_success() {
        t.uncertain = Some(op);
        return false;
    }
    t.acked.push(op);
    match op {
        Op::Create => {
            // Acknowledged even if the body is cut off; the id is then found by the label.
            t.id =
                resp.json::<Value>().await.ok().and_then(|v| v["id"].as_str().map(str::to_owned));
            t.id.is_some()
        }
        Op::Complete | Op::Reopen => {
            t.completed = op == Op::Complete;
            true
        }
        Op::Delete => {
            t.deleted = true;
            true
        }
        Op::Update => true,
    }
}

/// One client: creates tasks one after another and runs each one's plan, until its budget is
/// spent or an operation is not acknowledged (the server was killed).
async fn audit_client(
    http: reqwest::Client,
    base: String,
    token: String,
    user: usize,
    client: usize,
    answered: Arc<AtomicUsize>,
) -> Vec<Tracked> {
    let mut tasks = Vec::new();
    for n in 0..10 {
        let mut t = Tracked::new(user, format!("audit u{user} c{client} t{n}"));
        let mut ok = true;
        for &op in std::iter::once(&Op::Create).chain(PLANS[n % PLANS.len()]) {
            ok = perform(&http, &base, &token, &mut t, op).await;
            if !ok {
                break;
            }
            answered.fetch_add(1, Ordering::SeqCst);
        }
        tasks.push(t);
        if !ok {
            break;
        }
    }
    tasks
}

/// The audit log of every user against what the clients saw: each task's entries, oldest
/// first, are its acknowledged operations, possibly followed by its one uncertain operation;
/// no entry is for a task no client made and no entry or event appears twice. `Err` says
/// what does not hold (yet: the consumer may still be catching up).
fn check_audit(
    tasks: &[Tracked],
    user_ids: &[String],
    logs: &[Vec<Value>],
) -> Result<(usize, usize, usize), String> {
    let mut ids = HashSet::new();
    let mut event_ids = HashSet::new();
    // (user, entity id) → event types, oldest first; label → entity id, from `created`.
    let mut by_task: HashMap<(usize, String), Vec<String>> = HashMap::new();
    let mut created: HashMap<(usize, String), String> = HashMap::new();
    for (user, log) in logs.iter().enumerate() {
        for e in log {
            let field = |name: &str| e[name].as_str().map(str::to_owned);
            let (Some(id), Some(event_id), Some(ty), Some(entity)) =
                (field("id"), field("event_id"), field("event_type"), field("entity_id"))
            else {
                return Err(format!("entry without id, event_id, event_type or entity_id: {e}"));
            };
            if !ids.insert(id.clone()) {
                return Err(format!("entry id {id} appears twice"));
            }
            if !event_ids.insert(event_id.clone()) {
                return Err(format!("event {event_id} has two entries"));
            }
            if e["entity_type"] != "task" || e["actor"].as_str() != Some(user_ids[user].as_str()) {
                return Err(format!("entry {id} is not a task change by user {user}: {e}"));
            }
            if ty == Op::Create.event_type() {
                let label = e["data"]["task"]["title"].as_str().unwrap_or_default().to_owned();
                if let Some(first) = created.insert((user, label.clone()), entity.clone()) {
                    return Err(format!("'{label}' was created twice: tasks {first} and {entity}"));
                }
            }
            by_task.entry((user, entity)).or_default().push(ty);
        }
    }
    let (mut acked, mut uncertain) = (0, 0);
    for t in tasks {
        acked += t.acked.len();
        uncertain += usize::from(t.uncertain.is_some());
        let by_label = created.get(&(t.user, t.label.clone()));
        if let (Some(id), Some(logged)) = (&t.id, by_label)
            && id != logged
        {
            return Err(format!(
                "'{}' is task {id} but its created entry is for {logged}",
                t.label
            ));
        }
        let seen =
            t.id.as_ref()
                .or(by_label)
                .and_then(|id| by_task.remove(&(t.user, id.clone())))
                .unwrap_or_default();
        let expected: Vec<&str> = t.acked.iter().map(|op| op.event_type()).collect();
        let matches = seen == expected
            || t.uncertain.is_some_and(|op| {
                seen.len() == expected.len() + 1
                    && seen[..expected.len()] == expected[..]
                    && seen[expected.len()] == op.event_type()
            });
        if !matches {
            return Err(format!(
                "'{}' ({:?}): audit entries {seen:?}, acknowledged {expected:?}, uncertain {:?}",
                t.label, t.id, t.uncertain
            ));
        }
    }
    if let Some(((user, entity), types)) = by_task.iter().next() {
        return Err(format!(
            "user {user} has entries {types:?} for task {entity}, which no client made"
        ));
    }
    let total = ids.len();
    if total < acked || total > acked + uncertain {
        return Err(format!(
            "{total} entries for {acked} acknowledged and {uncertain} uncertain operations"
        ));
    }
    Ok((total, acked, uncertain))
}

/// Reads every user's audit log until it passes `check_audit` (at most `AUDIT_CATCH_UP`);
/// returns the counts and the logs that passed.
async fn audit_caught_up(
    server: &TestServer,
    tokens: &[String],
    tasks: &[Tracked],
    user_ids: &[String],
) -> ((usize, usize, usize), Vec<Vec<Value>>) {
    let start = Instant::now();
    loop {
        let mut logs = Vec::new();
        for token in tokens {
            logs.push(all_activity(server, token).await);
        }
        match check_audit(tasks, user_ids, &logs) {
            Ok(counts) => return (counts, logs),
            Err(why) => {
                assert!(start.elapsed() < AUDIT_CATCH_UP, "after {AUDIT_CATCH_UP:?}: {why}")
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `docket_consumer_delivered_total` of the audit consumer, from `/metrics`.
async fn delivered_by_audit(s: &TestServer) -> Option<f64> {
    let r = s.request(reqwest::Method::GET, "/metrics", None, None).await;
    r.text
        .lines()
        .find(|l| l.starts_with("docket_consumer_delivered_total") && l.contains("\"audit\""))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

/// The audit consumer under SIGKILL: concurrent clients create, update, complete, reopen and
/// delete tasks, the server is killed mid-load and restarted on the same database, a few more
/// operations follow, and then every acknowledged operation has exactly one audit entry
/// (none lost, none doubled) and every other entry is an operation whose answer was lost.
async fn audit_exactly_once_across_kill(db: Db) {
    const USERS: usize = 3;
    const CLIENTS: usize = 24;
    const KILL_AFTER: usize = 400;
    let mut server = TestServer::start_on(db, Vec::new()).await;
    let mut tokens = Vec::new();
    let mut user_ids = Vec::new();
    for u in 0..USERS {
        let (token, id) = server.signup(&format!("audit-crash-{u}@example.com")).await;
        tokens.push(token);
        user_ids.push(id);
    }
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let user = c % USERS;
        clients.push(tokio::spawn(audit_client(
            server.http.clone(),
            server.url.clone(),
            tokens[user].clone(),
            user,
            c,
            answered.clone(),
        )));
    }
    // Kill once a good part of the load has been acknowledged, with more still in flight.
    while answered.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            !clients.iter().all(|c| c.is_finished()),
            "the clients stopped after {} operations, before the kill",
            answered.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // For the log only: how far behind the writes the consumer was when it was killed.
    let delivered = delivered_by_audit(&server).await;
    server.kill().await;
    eprintln!(
        "killed with {} operations answered and {delivered:?} delivered to the audit consumer",
        answered.load(Ordering::SeqCst)
    );
    let mut tasks = Vec::new();
    for c in clients {
        tasks.extend(c.await.expect("client"));
    }
    let cut = tasks.iter().filter(|t| t.uncertain.is_some()).count();
    assert!(cut > 0, "the kill came after all the load; nothing was in flight");

    server.restart().await;
    // After the restart: one more status change on some tasks whose state is known, and a
    // fresh task per user; these must all be acknowledged.
    for t in tasks.iter_mut().filter(|t| t.usable()).take(30) {
        let op = if t.completed { Op::Reopen } else { Op::Complete };
        let token = &tokens[t.user];
        assert!(
            perform(&server.http, &server.url, token, t, op).await,
            "{op:?} of '{}' after the restart",
            t.label
        );
    }
    for (user, token) in tokens.iter().enumerate() {
        let mut t = Tracked::new(user, format!("audit u{user} after the restart"));
        for op in [Op::Create, Op::Update, Op::Complete, Op::Delete] {
            assert!(
                perform(&server.http, &server.url, token, &mut t, op).await,
                "{op:?} of '{}'",
                t.label
            );
        }
        tasks.push(t);
    }

    // The consumer delivers in log order, so once the operations made after the restart have
    // their entries, so has everything before them.
    let (counts, settled) = audit_caught_up(&server, &tokens, &tasks, &user_ids).await;
    let (total, acked, uncertain) = counts;
    // A marker made after that read: once its entry is there, the consumer has handled every
    // earlier event, so the read above was final: nothing but the marker's entry came since.
    let mut marker = Tracked::new(0, "audit marker after the check".to_owned());
    assert!(perform(&server.http, &server.url, &tokens[0], &mut marker, Op::Create).await);
    let marker_id = marker.id.clone().expect("the marker's id");
    tasks.push(marker);
    let (_, logs) = audit_caught_up(&server, &tokens, &tasks, &user_ids).await;
    let without_marker: Vec<Vec<Value>> = logs
        .into_iter()
        .map(|log| log.into_iter().filter(|e| e["entity_id"] != marker_id.as_str()).collect())
        .collect();
    assert_eq!(without_marker, settled, "the audit log settled before the marker");
    assert!(acked > KILL_AFTER, "only {acked} operations were acknowledged");
    eprintln!(
        "audit after a kill: {total} entries, {acked} acknowledged, {uncertain} uncertain operations"
    );

    // A task's history is its part of the activity.
    let logs: Vec<Vec<Value>> = {
        let mut logs = Vec::new();
        for token in &tokens {
            logs.push(all_activity(&server, token).await);
        }
        logs
    };
    for t in tasks.iter().filter(|t| t.id.is_some() && t.acked.len() > 2).take(10) {
        let id = t.id.as_deref().expect("filtered on the id");
        let r = server.get(&format!("/api/tasks/{id}/history?limit=200"), &tokens[t.user]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let of_task: Vec<&Value> =
            logs[t.user].iter().filter(|e| e["entity_id"].as_str() == Some(id)).collect();
        let history: Vec<&Value> = r.body["items"].as_array().expect("items").iter().collect();
        assert_eq!(history, of_task, "the history of '{}'", t.label);
    }
}

on_each_database!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    audit_exactly_once_across_kill_sqlite,
    audit_exactly_once_across_kill_postgres => audit_exactly_once_across_kill
);
