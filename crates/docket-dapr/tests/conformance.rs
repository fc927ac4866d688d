//! The state store conformance suite (`docket_ports::state_conformance!`) against
//! `DaprStateStore` over the test sidecar, one fresh sidecar per check; plus what only the
//! Dapr adapter has: Dapr's own (physical) expiry through `ttlInSeconds`, and purging only
//! what this store wrote.
//!
//! The sidecar's clock is a manual one that the conformance checks never move: they pass
//! their own `now`, so every expiry they see comes from the envelope, as the adapter's module
//! doc says. The tests below move the sidecar's clock to see Dapr's expiry.

use std::time::Duration;

use docket_dapr::DaprStateStore;
use docket_dapr::testing::{ManualClock, SidecarClock, TestSidecar};
use docket_ports::StateStore;
use docket_ports::conformance::StateFixture;
use jiff::Timestamp;

const STORE: &str = "statestore";

struct DaprFixture {
    store: DaprStateStore,
    _sidecar: TestSidecar,
}

impl StateFixture for DaprFixture {
    fn state(&self) -> &dyn StateStore {
        &self.store
    }
}

async fn sidecar(clock: &ManualClock) -> TestSidecar {
    TestSidecar::builder()
        .clock(SidecarClock::Manual(clock.clone()))
        .start()
        .await
        .expect("start the test sidecar")
}

async fn fresh() -> Option<DaprFixture> {
    let clock = ManualClock::new(Timestamp::now());
    let sidecar = sidecar(&clock).await;
    Some(DaprFixture { store: DaprStateStore::new(sidecar.client(), STORE), _sidecar: sidecar })
}

mod dapr {
    docket_ports::state_conformance!(super::fresh().await);
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_second(1_795_000_000 + i64::try_from(secs).expect("small")).expect("in range")
}

#[tokio::test]
async fn dapr_expires_entries_by_itself_through_ttl_in_seconds() {
    let clock = ManualClock::new(Timestamp::now());
    let sidecar = sidecar(&clock).await;
    let store = DaprStateStore::new(sidecar.client(), STORE);
    let ttl = Duration::from_millis(1500);
    store.set("test:short", b"s".to_vec(), None, Some(ttl), at(0)).await.expect("set");
    store.set("test:kept", b"k".to_vec(), None, None, at(0)).await.expect("set");
    assert_eq!(sidecar.state_keys(STORE), ["test:kept", "test:short"]);

    // 1.5 s is sent as ttlInSeconds = 2: Dapr never removes an entry before `now` says.
    clock.advance(Duration::from_millis(1999));
    assert_eq!(sidecar.state_keys(STORE), ["test:kept", "test:short"]);
    clock.advance(Duration::from_millis(1));
    assert_eq!(sidecar.state_keys(STORE), ["test:kept"], "the sidecar expired it");
    assert_eq!(store.get("test:short", at(0)).await.expect("get"), None, "gone for every reader");
    assert_eq!(store.purge_expired(at(10)).await.expect("purge"), 0, "nothing left to purge");
}

#[tokio::test]
async fn a_set_without_ttl_keeps_the_entry_on_the_sidecar_too() {
    let clock = ManualClock::new(Timestamp::now());
    let sidecar = sidecar(&clock).await;
    let store = DaprStateStore::new(sidecar.client(), STORE);
    let ttl = Some(Duration::from_secs(10));
    store.set("test:k", b"1".to_vec(), None, ttl, at(0)).await.expect("set with ttl");
    store.set("test:k", b"2".to_vec(), None, None, at(1)).await.expect("set without ttl");
    clock.advance(Duration::from_secs(3600));
    assert_eq!(sidecar.state_keys(STORE), ["test:k"], "ttlInSeconds = -1 cleared the ttl");
    assert_eq!(store.purge_expired(at(3600)).await.expect("purge"), 0);
    let got = store.get("test:k", at(3600)).await.expect("get").expect("present");
    assert_eq!((got.value, got.expires_at), (b"2".to_vec(), None));
}

#[tokio::test]
async fn purge_leaves_entries_rewritten_by_someone_else() {
    let clock = ManualClock::new(Timestamp::now());
    let sidecar = sidecar(&clock).await;
    let ours = DaprStateStore::new(sidecar.client(), STORE);
    let theirs = DaprStateStore::new(sidecar.client(), STORE);
    let ttl = Some(Duration::from_secs(10));
    ours.set("test:shared", b"ours".to_vec(), None, ttl, at(0)).await.expect("set");
    theirs.set("test:shared", b"theirs".to_vec(), None, ttl, at(5)).await.expect("rewrite");
    assert_eq!(ours.purge_expired(at(12)).await.expect("purge"), 0, "not our write any more");
    assert_eq!(sidecar.state_keys(STORE), ["test:shared"]);
    assert_eq!(theirs.purge_expired(at(15)).await.expect("purge"), 1);
    assert!(sidecar.state_keys(STORE).is_empty());
}

#[tokio::test]
async fn a_value_docket_did_not_write_is_an_error_not_a_panic() {
    let clock = ManualClock::new(Timestamp::now());
    let sidecar = sidecar(&clock).await;
    let item = docket_dapr::SaveState {
        key: "test:foreign".into(),
        value: serde_json::json!({"hello": "world"}),
        etag: None,
        concurrency: None,
        ttl_in_seconds: None,
    };
    sidecar.client().save_state(STORE, &[item]).await.expect("save");
    let store = DaprStateStore::new(sidecar.client(), STORE);
    match store.get("test:foreign", at(0)).await {
        Err(docket_ports::StateError::Store(e)) => {
            assert!(e.to_string().contains("did not write"), "{e}")
        }
        other => panic!("expected a store error, got {other:?}"),
    }
}
