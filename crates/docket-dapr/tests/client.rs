//! `DaprClient` and `Secrets` against the test sidecar: publish passes our envelope through
//! with the CloudEvents content type and its partition key as metadata, bulk publish reports
//! failed entries, secrets fall back to the environment, ETag mismatches are conflicts, the
//! API token is sent.

use std::collections::{BTreeMap, HashMap};

use docket_dapr::testing::TestSidecar;
use docket_dapr::{
    BulkFailure, CLOUDEVENTS_CONTENT_TYPE, Concurrency, DaprClient, DaprError, Job, SaveState,
    Secrets,
};
use docket_events::CloudEvent;
use jiff::Timestamp;
use secrecy::ExposeSecret as _;
use serde_json::json;

async fn sidecar() -> TestSidecar {
    TestSidecar::builder().start().await.expect("start the test sidecar")
}

fn event(ty: &str) -> CloudEvent {
    CloudEvent {
        specversion: "1.0".into(),
        id: uuid::Uuid::now_v7().to_string(),
        source: "/docket/api".into(),
        ty: ty.into(),
        subject: Some(uuid::Uuid::now_v7().to_string()),
        time: Some("2026-11-18T09:30:00.123456Z".parse().expect("time")),
        datacontenttype: Some("application/json".into()),
        partitionkey: Some("user-1".into()),
        sequence: Some("00000000000000000042".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        extensions: BTreeMap::new(),
        data: Some(json!({"task": {"title": "ünïcode", "n": 1.5}})),
    }
}

#[tokio::test]
async fn publish_passes_the_envelope_through_unchanged() {
    let sidecar = sidecar().await;
    let e = event("com.todo.task.created");
    sidecar.client().publish("pubsub", "task-events", &e).await.expect("publish");
    let published = sidecar.published("pubsub", "task-events");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].content_type, CLOUDEVENTS_CONTENT_TYPE);
    assert_eq!(published[0].event, serde_json::to_value(&e).expect("json"), "byte for byte JSON");
    let back = CloudEvent::parse(published[0].event.to_string().as_bytes()).expect("parse");
    assert_eq!(back, e);
    assert!(sidecar.published("pubsub", "other").is_empty());
}

#[tokio::test]
async fn a_refused_publish_is_unavailable() {
    let sidecar = sidecar().await;
    sidecar.reject_type("com.todo.poison");
    match sidecar.client().publish("pubsub", "t", &event("com.todo.poison")).await {
        Err(DaprError::Unavailable { status: Some(500), code, .. }) => {
            assert_eq!(code.as_deref(), Some("ERR_PUBSUB_PUBLISH_MESSAGE"))
        }
        other => panic!("expected Unavailable 500, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_sends_the_partition_key_as_metadata() {
    let sidecar = sidecar().await;
    let client = sidecar.client();
    let mut keyless = event("com.todo.task.created");
    keyless.partitionkey = None;
    client.publish("pubsub", "one", &event("com.todo.task.created")).await.expect("publish");
    client.publish("pubsub", "one", &keyless).await.expect("publish");
    let events = [event("com.todo.task.created"), keyless];
    assert_eq!(client.bulk_publish("pubsub", "bulk", &events).await.expect("bulk"), []);
    for topic in ["one", "bulk"] {
        let keys: Vec<_> =
            sidecar.published("pubsub", topic).into_iter().map(|p| p.partition_key).collect();
        assert_eq!(keys, [Some("user-1".to_owned()), None], "on '{topic}'");
    }
}

#[tokio::test]
async fn bulk_publish_reports_the_failed_entries() {
    let sidecar = sidecar().await;
    let client = sidecar.client();
    let events =
        [event("com.todo.task.created"), event("com.todo.poison"), event("com.todo.task.updated")];
    assert_eq!(client.bulk_publish("pubsub", "t", &[]).await.expect("empty"), []);
    assert_eq!(client.bulk_publish("pubsub", "t", &events[..1]).await.expect("bulk"), []);
    sidecar.reject_type("com.todo.poison");
    let failed = client.bulk_publish("pubsub", "t", &events).await.expect("bulk");
    assert_eq!(
        failed,
        [BulkFailure {
            index: 1,
            event_id: events[1].id.clone(),
            error: "rejected by the test sidecar".into()
        }]
    );
    let published: Vec<_> = sidecar.published("pubsub", "t").into_iter().map(|p| p.event).collect();
    let expect: Vec<_> = [&events[0], &events[0], &events[2]]
        .into_iter()
        .map(|e| serde_json::to_value(e).expect("json"))
        .collect();
    assert_eq!(published, expect);
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let map: HashMap<String, String> =
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    move |name| map.get(name).cloned()
}

#[tokio::test]
async fn secrets_come_from_the_store_then_the_environment() {
    let sidecar = TestSidecar::builder()
        .secret_keys(
            "secretstore",
            "docket",
            &[("DOCKET_JWT_SECRET", "from-dapr"), ("DOCKET_DATABASE_URL", "postgres://db/docket")],
        )
        .secret_store("empty")
        .start()
        .await
        .expect("start");
    let secrets = Secrets::dapr(sidecar.client(), "secretstore", "docket").with_env(env(&[
        ("DOCKET_JWT_SECRET", "from-env"),
        ("DOCKET_SMTP_PASSWORD", "smtp-from-env"),
    ]));
    let get = |name: &'static str| {
        let secrets = secrets.clone();
        async move { secrets.get(name).await.expect("get").map(|s| s.expose_secret().to_owned()) }
    };
    assert_eq!(get(docket_dapr::JWT_SECRET).await.as_deref(), Some("from-dapr"), "store first");
    assert_eq!(get(docket_dapr::DATABASE_URL).await.as_deref(), Some("postgres://db/docket"));
    assert_eq!(
        get(docket_dapr::SMTP_PASSWORD).await.as_deref(),
        Some("smtp-from-env"),
        "a key the secret lacks falls back"
    );

    // A store without the secret leaves everything to the environment; empty is unset.
    let absent = Secrets::dapr(sidecar.client(), "empty", "docket")
        .with_env(env(&[("DOCKET_JWT_SECRET", "from-env"), ("DOCKET_DATABASE_URL", "")]));
    let jwt = absent.get(docket_dapr::JWT_SECRET).await.expect("get").expect("set");
    assert_eq!(jwt.expose_secret(), "from-env");
    assert!(absent.get(docket_dapr::DATABASE_URL).await.expect("get").is_none());

    let env_only = Secrets::env().with_env(env(&[("DOCKET_JWT_SECRET", "from-env")]));
    let jwt = env_only.get(docket_dapr::JWT_SECRET).await.expect("get").expect("set");
    assert_eq!(jwt.expose_secret(), "from-env");

    let misnamed = Secrets::dapr(sidecar.client(), "no-such-store", "docket")
        .with_env(env(&[("DOCKET_JWT_SECRET", "from-env")]));
    match misnamed.get(docket_dapr::JWT_SECRET).await {
        Err(DaprError::Unavailable { status: Some(400), .. }) => {}
        other => panic!("a misnamed store must fail, not fall back: {other:?}"),
    }
    assert!(!format!("{secrets:?}").contains("from"), "Debug shows no secret");
}

#[tokio::test]
async fn etag_mismatches_are_conflicts() {
    let sidecar = sidecar().await;
    let client = sidecar.client();
    let save = |value: i64, etag: Option<&str>| SaveState {
        key: "test:k".into(),
        value: json!(value),
        etag: etag.map(str::to_owned),
        concurrency: etag.map(|_| Concurrency::FirstWrite),
        ttl_in_seconds: None,
    };
    let conflict = |r: Result<(), DaprError>| match r {
        Err(DaprError::Conflict { status: 409, .. }) => {}
        other => panic!("expected Conflict 409, got {other:?}"),
    };
    conflict(client.save_state("s", &[save(0, Some("1"))]).await);
    client.save_state("s", &[save(1, None)]).await.expect("create");
    let item = client.get_state("s", "test:k").await.expect("get").expect("present");
    let etag = item.etag.expect("an etag");
    assert_eq!(item.value, json!(1));
    client.save_state("s", &[save(2, Some(&etag))]).await.expect("first write");
    conflict(client.save_state("s", &[save(3, Some(&etag))]).await);
    conflict(client.delete_state("s", "test:k", Some(&etag)).await);
    let current = client.get_state("s", "test:k").await.expect("get").expect("present");
    assert_eq!(current.value, json!(2), "conflicts changed nothing");
    let etag = current.etag.expect("etag");
    client.delete_state("s", "test:k", Some(&etag)).await.expect("delete");
    assert_eq!(client.get_state("s", "test:k").await.expect("get"), None);
    client.delete_state("s", "test:k", None).await.expect("deleting a missing key");
}

#[tokio::test]
async fn jobs_conflict_unless_overwritten() {
    let sidecar = sidecar().await;
    let client = sidecar.client();
    let due: Timestamp = "2030-01-01T10:00:00+01:00".parse().expect("time");
    let job = Job { due_time: due, data: json!({"reminder": 1}), overwrite: false };
    client.schedule_job("reminder-1", &job).await.expect("schedule");
    match client.schedule_job("reminder-1", &job).await {
        Err(DaprError::Conflict { status: 409, .. }) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    let later = Job { due_time: due + jiff::SignedDuration::from_hours(1), overwrite: true, ..job };
    client.schedule_job("reminder-1", &later).await.expect("overwrite");
    let jobs = sidecar.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].due_time, later.due_time);
    client.delete_job("reminder-1").await.expect("delete");
    client.delete_job("reminder-1").await.expect("deleting again");
    assert!(sidecar.jobs().is_empty());
}

#[tokio::test]
async fn the_api_token_is_sent_and_required() {
    let sidecar = TestSidecar::builder().api_token("s3cret").start().await.expect("start");
    sidecar.client().publish("pubsub", "t", &event("x")).await.expect("with the token");
    let anonymous = DaprClient::new(&sidecar.url(), None).expect("client");
    match anonymous.publish("pubsub", "t", &event("x")).await {
        Err(DaprError::Unavailable { status: Some(401), .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    anonymous.healthz_outbound().await.expect("health needs no token");
    assert!(!format!("{:?}", sidecar.client()).contains("s3cret"), "Debug hides the token");
}

#[tokio::test]
async fn an_unreachable_sidecar_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let client = DaprClient::new(&closed, None).expect("client");
    match client.get_state("s", "test:k").await {
        Err(DaprError::Unavailable { status: None, message, .. }) => {
            assert!(!message.contains("test:k"), "no key in '{message}'")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
