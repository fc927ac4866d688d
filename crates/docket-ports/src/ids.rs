//! Fresh ids, made at the edges: a new id reads the clock and draws random bits, which
//! `docket-core` and `docket-events` never do, so the use cases, the store adapters and the
//! tests make ids here and hand them in (`NewTask::into_task(id, …)`, the `plan` functions,
//! an event's `Origin`).
//!
//! Ids are UUIDv7: time-ordered, so keyset pagination can break ties on them; within one
//! process they also grow in the order they are made (the `uuid` crate's counter).

use docket_core::Timestamp;
use uuid::Uuid;

/// A new time-ordered id of any of the id types (`TaskId`, `UserId`, …, or a plain `Uuid`).
pub fn new_id<I: From<Uuid>>() -> I {
    I::from(Uuid::now_v7())
}

/// A new event id: a UUIDv7 whose time part is the event's time `at` (the caller's clock, not
/// the system's), its random part drawn here.
pub fn event_id(at: Timestamp) -> Uuid {
    let secs = u64::try_from(at.as_second()).unwrap_or(0);
    let nanos = u32::try_from(at.subsec_nanosecond()).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use docket_core::TaskId;

    #[test]
    fn new_ids_are_distinct_and_grow() {
        let (a, b): (TaskId, TaskId) = (new_id(), new_id());
        assert_ne!(a, b, "each gets a new id");
        assert!(a < b, "ids made later sort later");
        assert_eq!(a.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn event_ids_are_uuid_v7_at_the_event_time() {
        let at: Timestamp = "2026-11-18T10:00:00.123Z".parse().expect("instant");
        let id = event_id(at);
        assert_eq!(id.get_version_num(), 7, "event ids are UUIDv7");
        let (secs, nanos) = id.get_timestamp().expect("a v7 has a time").to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_794_996_000, 123));
        assert_ne!(event_id(at), id, "the random part differs");
    }
}
