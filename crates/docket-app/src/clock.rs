//! The clock port: use cases ask it for "now" instead of reading the system time, so tests
//! can pin time (token expiry, overdue tasks) without sleeping.

use docket_core::Timestamp;

pub trait Clock: Send + Sync + 'static {
    /// The current instant, at microsecond precision (what the stores keep).
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        docket_core::time::truncate_micros(Timestamp::now())
    }
}

/// A clock that stands still at a given instant, for tests; it can be moved by hand.
#[derive(Debug)]
pub struct FixedClock(std::sync::Mutex<Timestamp>);

impl FixedClock {
    pub fn new(at: Timestamp) -> FixedClock {
        FixedClock(std::sync::Mutex::new(at))
    }

    pub fn set(&self, at: Timestamp) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
