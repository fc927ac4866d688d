//! What only `DaprBus` has, over the test sidecar (the contract itself is
//! `bus_conformance.rs`): the subscription list Dapr reads, the answers Dapr gets (`SUCCESS`
//! once the event is in the inbox, whatever the groups do later; `DROP` for a body that is
//! not a CloudEvent), and a redelivery kept once.

use std::sync::Arc;
use std::time::Duration;

use docket_bus::conformance::event;
use docket_bus::embedded::EmbeddedBus;
use docket_bus::{EventBus, Message, SubscribeOptions, Subscription};
use docket_dapr::bus::DaprBus;
use docket_dapr::callbacks::AppCallbacks;
use docket_dapr::testing::{Answer, TestSidecar};
use docket_sqlite::SqliteStore;

const PUBSUB: &str = "docket-pubsub";
const PATIENCE: Duration = Duration::from_secs(10);

struct Rig {
    sidecar: TestSidecar,
    bus: DaprBus,
    url: String,
    _server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// A bus declaring `topics`, served and attached to an ordered sidecar that retries forever.
async fn rig(topics: &[&str]) -> Rig {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("docket.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open the store");
    let log = EmbeddedBus::new(Arc::new(store));
    let sidecar =
        TestSidecar::builder().ordered_until_taken().start().await.expect("start the sidecar");
    let bus = DaprBus::new(sidecar.client(), PUBSUB, log);
    for topic in topics {
        bus.declare_topic(topic).expect("a valid topic");
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    let router = AppCallbacks::new(None).keep_in(bus.clone()).router();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    sidecar.attach_app(&url).await.expect("attach");
    Rig { sidecar, bus, url, _server: server, _dir: dir }
}

async fn next(sub: &mut Box<dyn Subscription>) -> Message {
    tokio::time::timeout(PATIENCE, sub.next()).await.expect("a delivery in time").expect("next")
}

fn options() -> SubscribeOptions {
    SubscribeOptions { max_attempts: 5, ..SubscribeOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_reads_one_subscription_per_topic_with_its_dead_letter_topic() {
    let rig = rig(&["task-events", "odd topic/name"]).await;
    let subs = rig.sidecar.attach_app(&rig.url).await.expect("attach");
    let got: Vec<_> =
        subs.iter().map(|s| (s.pubsubname.as_str(), s.topic.as_str(), s.route.as_str())).collect();
    assert_eq!(
        got,
        [
            (PUBSUB, "odd topic/name", "/dapr/events/odd%20topic%2Fname"),
            (PUBSUB, "task-events", "/dapr/events/task-events"),
        ]
    );
    let dead: Vec<_> = subs.iter().map(|s| s.dead_letter_topic.clone()).collect();
    assert_eq!(dead, [Some("odd topic/name.dlq".to_owned()), Some("task-events.dlq".to_owned())]);

    // The encoded route reaches the topic's groups.
    let mut sub = rig.bus.subscribe("g", "odd topic/name", options()).await.expect("subscribe");
    let e = event("k", 1);
    rig.bus.publish("odd topic/name", vec![e.clone()]).await.expect("publish");
    let d = next(&mut sub).await;
    assert_eq!(d.event.id, e.id);
    for attribute in ["pubsubname", "topic", "traceid", "tracestate"] {
        assert!(!d.event.extensions.contains_key(attribute), "Dapr's '{attribute}' is removed");
    }
    sub.ack(&d).await.expect("ack");
    rig.sidecar.idle().await;
    let answers: Vec<_> = rig.sidecar.deliveries().into_iter().map(|r| r.answer).collect();
    assert_eq!(answers, [Answer::Success]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_is_answered_once_the_event_is_kept_not_when_groups_settle() {
    let topic = "kept";
    let rig = rig(&[topic]).await;
    let mut audit = rig.bus.subscribe("audit", topic, options()).await.expect("subscribe");
    let mut webhooks = rig.bus.subscribe("webhooks", topic, options()).await.expect("subscribe");
    let (a, b) = (event("k", 1), event("k", 2));
    rig.bus.publish(topic, vec![a.clone(), b.clone()]).await.expect("publish");
    rig.sidecar.idle().await;
    let answers: Vec<_> = rig.sidecar.deliveries().into_iter().map(|r| r.answer).collect();
    assert_eq!(answers, [Answer::Success, Answer::Success], "nothing waits for the groups");

    // One group retrying does not hold the other, nor bring Dapr back.
    let d = next(&mut webhooks).await;
    assert_eq!((d.event.id.as_str(), d.attempt), (a.id.as_str(), 1));
    webhooks.nack(&d, Duration::from_millis(30), "endpoint down").await.expect("nack");
    for e in [&a, &b] {
        let d = next(&mut audit).await;
        assert_eq!(d.event.id, e.id);
        audit.ack(&d).await.expect("ack");
    }
    let again = next(&mut webhooks).await;
    assert_eq!((again.event.id.as_str(), again.attempt), (a.id.as_str(), 2));
    webhooks.ack(&again).await.expect("ack");
    assert_eq!(rig.sidecar.deliveries().len(), 2, "the retry was the bus's, not Dapr's");

    // A group that joins now reads what is kept.
    let mut late = rig.bus.subscribe("late", topic, options()).await.expect("subscribe");
    assert_eq!(next(&mut late).await.event.id, a.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_dapr_delivers_twice_is_kept_once() {
    let topic = "twice";
    let rig = rig(&[topic]).await;
    let mut sub = rig.bus.subscribe("g", topic, options()).await.expect("subscribe");
    let (a, b) = (event("k", 1), event("k", 2));
    // At-least-once: the same event published (so delivered) again, then another one.
    rig.bus.publish(topic, vec![a.clone(), a.clone(), b.clone()]).await.expect("publish");
    rig.sidecar.idle().await;
    let answers: Vec<_> = rig.sidecar.deliveries().into_iter().map(|r| r.answer).collect();
    assert_eq!(
        answers,
        [Answer::Success, Answer::Success, Answer::Success],
        "a redelivery is answered SUCCESS too"
    );
    for e in [&a, &b] {
        let d = next(&mut sub).await;
        assert_eq!(d.event.id, e.id);
        sub.ack(&d).await.expect("ack");
    }
    let nothing = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(nothing.is_err(), "the second copy was not kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_cloud_event_is_dropped() {
    let rig = rig(&["t"]).await;
    let response = reqwest::Client::new()
        .post(format!("{}dapr/events/t", rig.url))
        .header("content-type", "application/cloudevents+json")
        .body("{\"not\": \"an event\"}")
        .send()
        .await
        .expect("the app answers");
    assert!(response.status().is_success());
    let body: serde_json::Value = response.json().await.expect("a JSON answer");
    assert_eq!(body, serde_json::json!({ "status": "DROP" }));
}
