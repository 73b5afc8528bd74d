//! How the audit writes times: RFC 3339 UTC, whole seconds.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 UTC text of a time (`2026-01-02T03:04:05Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

/// Whole days from `now` to `t`, rounded down (negative once `t` has passed).
pub fn days_until(t: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (t - now).whole_seconds().div_euclid(86_400)
}
