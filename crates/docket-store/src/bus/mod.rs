//! What the embedded event bus (`docket-bus`) stores beside the outbox, for both dialects:
//! appending an event to any topic (publishing, dead letters), each consumer group's committed
//! position (`consumer_offsets`) and the failed attempts of the event it is retrying
//! (`consumer_attempts`).
//!
//! The functions run inside a caller's transaction, like the state store's, so a consumer can
//! commit its position with its own writes. They hold no policy (retries, dead-lettering,
//! order): that is the bus's. Positions only grow: saving a lower one keeps the higher.

pub mod postgres;
pub mod sqlite;
