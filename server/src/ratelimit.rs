//! Token buckets per source (uploads, anonymous requests) or per
//! (certificate, source) for node certificates.
//!
//! A bucket holds up to `burst` tokens and regains `per_minute` tokens a
//! minute; a request takes one token or is refused with the time until the
//! next token (sent as `Retry-After`).
//!
//! Invariant: the table is bounded by [`MAX_TRACKED_SOURCES`]; when full, the
//! buckets that are full again (idle sources) are dropped first, and if none
//! is, new sources are refused rather than the table growing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most source addresses tracked at once per limiter.
pub const MAX_TRACKED_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket limiter per key: a source address by default.
#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    burst: f64,
    per_sec: f64,
    /// Buckets by key; one lock, held only for a map lookup.
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// A limiter allowing `burst` at once and `per_minute` sustained.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * self.per_sec).min(self.burst);
        b.at = now;
    }

    /// Takes one token for `source` at `now`, or says how long to wait.
    pub fn check(&self, source: K, now: Instant) -> Result<(), Duration> {
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if !map.contains_key(&source) && map.len() >= MAX_TRACKED_SOURCES {
            let burst = self.burst;
            let per_sec = self.per_sec;
            map.retain(|_, b| {
                let dt = now.saturating_duration_since(b.at).as_secs_f64();
                b.tokens + dt * per_sec < burst
            });
            if map.len() >= MAX_TRACKED_SOURCES {
                return Err(Duration::from_secs(60));
            }
        }
        let b = map.entry(source).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else if self.per_sec <= 0.0 {
            Err(Duration::from_secs(3600))
        } else {
            let wait = (1.0 - b.tokens) / self.per_sec;
            Err(Duration::from_secs_f64(wait.clamp(0.001, 86_400.0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let l = RateLimiter::new(3, 60);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let other: IpAddr = "127.0.0.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip, t0).is_ok());
        }
        let wait = l.check(ip, t0).expect_err("limited");
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(l.check(other, t0).is_ok(), "sources are independent");
        assert!(l.check(ip, t0 + Duration::from_millis(1100)).is_ok());
        assert!(l.check(ip, t0 + Duration::from_millis(1100)).is_err());
    }

    #[test]
    fn table_stays_bounded_under_a_spray_of_sources() {
        let l = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        let mut refused = 0;
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i)));
            if l.check(ip, t0).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 100);
        let n = l.buckets.lock().expect("lock").len();
        assert!(n <= MAX_TRACKED_SOURCES);
        // Once they are idle long enough, new sources get in again.
        let later = t0 + Duration::from_secs(120);
        assert!(l.check("127.0.0.9".parse().expect("ip"), later).is_ok());
    }
}
