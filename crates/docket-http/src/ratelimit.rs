//! The login rate limit: at most `max` attempts per window for one client address and one
//! email, counted in memory on a sliding window. Per process: with several replicas each
//! enforces its own budget, which still bounds guessing to a small multiple.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Above this many tracked keys, idle ones are dropped before a new one is added.
const MAX_KEYS: usize = 100_000;

pub struct LoginLimiter {
    max: u32,
    window: Duration,
    hits: Mutex<HashMap<(IpAddr, String), VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max: u32, window: Duration) -> LoginLimiter {
        LoginLimiter { max: max.max(1), window, hits: Mutex::new(HashMap::new()) }
    }

    /// Records an attempt; `Err(seconds)` when over the budget, with when to retry.
    pub fn check(&self, ip: IpAddr, email: &str) -> Result<(), u64> {
        let now = Instant::now();
        let key = (ip, email.trim().to_lowercase().chars().take(254).collect::<String>());
        let mut hits = self.hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if hits.len() >= MAX_KEYS && !hits.contains_key(&key) {
            let window = self.window;
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = hits.entry(key).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            q.pop_front();
        }
        if q.len() >= self.max as usize {
            let oldest = q.front().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(u64::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u64::MAX).max(1));
        }
        q.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_per_ip_and_email() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.check(ip, "a@x.io").is_ok());
        assert!(l.check(ip, "A@x.io ").is_ok());
        let retry = l.check(ip, "a@x.io").unwrap_err();
        assert!((1..=61).contains(&retry), "{retry}");
        assert!(l.check(ip, "b@x.io").is_ok());
        assert!(l.check("10.0.0.2".parse().unwrap(), "a@x.io").is_ok());
    }
}
