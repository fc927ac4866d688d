//! Identifier newtypes. All ids are UUIDv7, so they sort by creation time; keyset pagination
//! uses the id as its tie-breaker for that reason.
//!
//! This crate makes no id: a fresh one reads the clock and draws random bits, so it is made at
//! the edge (`docket_ports::ids::new_id`) and handed in (`NewTask::into_task(id, …)`, the
//! `plan` functions that may create a row take the id it gets).

use std::fmt;
use std::str::FromStr;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map($name)
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(u: uuid::Uuid) -> Self {
                $name(u)
            }
        }
    };
}

id_type!(
    /// A user (account).
    UserId
);
id_type!(
    /// A task.
    TaskId
);
id_type!(
    /// A category.
    CategoryId
);
id_type!(
    /// A personal access token.
    TokenId
);
id_type!(
    /// A reminder.
    ReminderId
);
id_type!(
    /// An in-app notification.
    NotificationId
);
id_type!(
    /// A recurring series (§2.3).
    SeriesId
);
id_type!(
    /// A webhook (§2.5).
    WebhookId
);
id_type!(
    /// One delivery of a notification over an outside channel (email or webhook).
    DeliveryId
);

/// A distinct id per call, for this crate's unit tests (a counter, not the clock).
#[cfg(test)]
pub(crate) fn test_id<I: From<uuid::Uuid>>() -> I {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    I::from(uuid::Uuid::from_u128(u128::from(n)))
}
