//! When to try again: exponential backoff with full jitter, `Retry-After`,
//! and an overall deadline.
//!
//! Pure: [`decide`] takes the attempt number, what happened, the time left
//! and a random source, and returns how long to wait or why to stop. The
//! caller owns the clock and the sleeping.
//!
//! Rules: a transport failure (connect, TLS, reset, stall, truncation), a
//! 5xx, 408 or 429 is worth another try; any other 4xx is final (the server
//! understood and refused). The wait is `Retry-After` when the server sent
//! one (capped at [`MAX_RETRY_AFTER`]), otherwise a uniformly random time in
//! `[0, min(cap, base * 2^attempt)]`. A wait that would end past the
//! deadline is not taken.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// First backoff ceiling.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Largest backoff ceiling.
pub const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Longest `Retry-After` honoured; a longer one is shortened to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The outcome of one attempt that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No HTTP status: connect, TLS, reset, timeout, truncated body.
    Transport,
    /// An HTTP status other than success, with the wait the server asked for.
    Status(u16, Option<Duration>),
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    Wait(Duration),
    /// Stop: the failure is final or no time is left.
    GiveUp(&'static str),
}

/// Whether an HTTP status may succeed on another try.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Decides what to do after attempt number `attempt` (0-based) failed.
pub fn decide<R: Rng + ?Sized>(
    attempt: u32,
    failure: &Failure,
    left: Duration,
    rng: &mut R,
) -> Decision {
    let asked = match failure {
        Failure::Transport => None,
        Failure::Status(s, after) => {
            if !retryable_status(*s) {
                return Decision::GiveUp("the server refused the request (final 4xx status)");
            }
            after.map(|d| d.min(MAX_RETRY_AFTER))
        }
    };
    let wait = match asked {
        Some(d) => d,
        None => {
            let ceiling = BACKOFF_BASE
                .checked_mul(1u32 << attempt.min(20))
                .unwrap_or(BACKOFF_CAP)
                .min(BACKOFF_CAP);
            let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
            Duration::from_millis(rng.gen_range(0..=ms))
        }
    };
    if wait >= left {
        return Decision::GiveUp("the deadline would pass before the next try");
    }
    Decision::Wait(wait)
}

/// Parses a `Retry-After` header value: delta-seconds or an IMF-fixdate
/// HTTP-date (RFC 9110 §10.2.3), relative to `now`. A date in the past means
/// no wait; anything unparseable is `None` (the caller backs off instead).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(Duration::from_secs);
    }
    let when = parse_http_date(v)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn parse_http_date(v: &str) -> Option<SystemTime> {
    let b = v.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    if !["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&v.get(..3)?) {
        return None;
    }
    let num = |s: &str| -> Option<u64> {
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let day = num(v.get(5..7)?)?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| Some(*m) == v.get(8..11))? as u64
        + 1;
    let year = num(v.get(12..16)?)?;
    if v.get(7..8)? != " " || v.get(11..12)? != " " || v.get(16..17)? != " " {
        return None;
    }
    let (h, m, s) = (
        num(v.get(17..19)?)?,
        num(v.get(20..22)?)?,
        num(v.get(23..25)?)?,
    );
    if v.get(19..20)? != ":" || v.get(22..23)? != ":" {
        return None;
    }
    if !(1970..=9999).contains(&year) || day == 0 || day > 31 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe;
    let days = days.checked_sub(719_468)?;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const LOTS: Duration = Duration::from_secs(3600);

    #[test]
    fn final_and_retryable_statuses() {
        let mut rng = StdRng::seed_from_u64(1);
        for s in [400, 401, 403, 404, 405, 409, 410, 413, 499] {
            assert!(
                matches!(
                    decide(0, &Failure::Status(s, None), LOTS, &mut rng),
                    Decision::GiveUp(_)
                ),
                "{s}"
            );
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(
                    decide(0, &Failure::Status(s, None), LOTS, &mut rng),
                    Decision::Wait(_)
                ),
                "{s}"
            );
        }
        assert!(matches!(
            decide(0, &Failure::Transport, LOTS, &mut rng),
            Decision::Wait(_)
        ));
    }

    #[test]
    fn backoff_grows_with_full_jitter_and_is_capped() {
        let mut rng = StdRng::seed_from_u64(2);
        for attempt in 0..40u32 {
            let ceiling = (BACKOFF_BASE * 2u32.saturating_pow(attempt.min(20))).min(BACKOFF_CAP);
            let mut max_seen = Duration::ZERO;
            let mut min_seen = Duration::MAX;
            for _ in 0..500 {
                match decide(attempt, &Failure::Transport, LOTS, &mut rng) {
                    Decision::Wait(d) => {
                        assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                        max_seen = max_seen.max(d);
                        min_seen = min_seen.min(d);
                    }
                    Decision::GiveUp(r) => panic!("{r}"),
                }
            }
            // Full jitter: the waits spread over the whole range.
            assert!(
                max_seen > ceiling * 8 / 10,
                "attempt {attempt}: max {max_seen:?}"
            );
            assert!(
                min_seen < ceiling * 2 / 10,
                "attempt {attempt}: min {min_seen:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_capped_and_bounded_by_the_deadline() {
        let mut rng = StdRng::seed_from_u64(3);
        let f = |s| Failure::Status(503, Some(Duration::from_secs(s)));
        assert_eq!(
            decide(9, &f(2), LOTS, &mut rng),
            Decision::Wait(Duration::from_secs(2))
        );
        assert_eq!(
            decide(0, &f(100_000), LOTS, &mut rng),
            Decision::Wait(MAX_RETRY_AFTER)
        );
        assert!(matches!(
            decide(0, &f(5), Duration::from_secs(4), &mut rng),
            Decision::GiveUp(_)
        ));
        assert!(matches!(
            decide(0, &Failure::Transport, Duration::ZERO, &mut rng),
            Decision::GiveUp(_)
        ));
        // 404 with Retry-After is still final.
        assert!(matches!(
            decide(
                0,
                &Failure::Status(404, Some(Duration::from_secs(1))),
                LOTS,
                &mut rng
            ),
            Decision::GiveUp(_)
        ));
    }

    #[test]
    fn retry_after_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_835_438_400))
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "99999999999",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 0x Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:4:937 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:3\u{e9} GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
