//! A token bucket per API key, in this instance's memory.
//!
//! Each key may make `ADE_RATE_LIMIT_PER_SECOND` requests per second on
//! average, with bursts of twice that; past it a request is answered 429
//! `rate_limited` with `Retry-After`. Buckets are per API instance (a client
//! spread over N instances gets up to N times the rate); `0` turns the limit
//! off.

use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use uuid::Uuid;

/// Buckets of every key seen recently.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets kept at most; idle (full) ones are dropped beyond it.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// `per_second` requests per key on average (0: unlimited), bursts of twice that.
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            burst: (2.0 * per_second).max(1.0),
            buckets: Mutex::default(),
        }
    }

    /// Takes one token from `key`'s bucket, or says how long to wait.
    pub fn charge(&self, key: Uuid) -> Result<(), ApiError> {
        if self.per_second == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limit lock");
        if buckets.len() >= MAX_BUCKETS {
            let burst = self.burst;
            let rate = self.per_second;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / self.per_second;
        Err(ApiError::RateLimited {
            retry_after_s: wait.ceil().max(1.0) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_keys_are_independent() {
        let limiter = RateLimiter::new(2);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..4 {
            limiter.charge(a).unwrap();
        }
        match limiter.charge(a) {
            Err(ApiError::RateLimited { retry_after_s }) => assert_eq!(retry_after_s, 1),
            other => panic!("{other:?}"),
        }
        assert!(limiter.charge(b).is_ok(), "another key has its own bucket");
        let unlimited = RateLimiter::new(0);
        assert!((0..10_000).all(|_| unlimited.charge(a).is_ok()));
    }
}
