//! Every limit of the fetcher, in one place: timeouts, rates, sizes,
//! deadlines. [`Settings::default`] holds the defaults; the kernel command
//! line sets the overall deadline (`satchel.timeout=`), and `main` lets tests
//! shorten the others with flags.

use std::time::Duration;

/// Overall deadline of a boot run when `satchel.timeout=` is not given.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);
/// TCP connect timeout, per address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TLS handshake timeout, per connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from sending a request to receiving the response headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Minimum throughput of a body, in bytes per second, averaged over
/// [`STALL_WINDOW`]: a server trickling slower is dropped (a 1 byte/s peer
/// must not hold a boot).
pub const MIN_RATE_BYTES_PER_SEC: u64 = 16 * 1024;
/// Window over which [`MIN_RATE_BYTES_PER_SEC`] is measured.
pub const STALL_WINDOW: Duration = Duration::from_secs(10);
/// Largest bundle downloaded, in bytes.
pub const MAX_BUNDLE_BYTES: u64 = 2 << 30;
/// Largest boot index or other JSON response, in bytes.
pub const MAX_JSON_BYTES: u64 = 64 * 1024;
/// Largest response header block, in bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Timeout of one DNS query to one nameserver.
pub const DNS_QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts per nameserver and query.
pub const DNS_ATTEMPTS: usize = 2;
/// Time the report still gets after the deadline passed, so that a failed
/// boot is still reported.
pub const REPORT_GRACE: Duration = Duration::from_secs(10);
/// Longest error text put in a report, in characters.
pub const MAX_REPORT_ERROR_CHARS: usize = 2048;
/// Most bundles accepted in one boot index.
pub const MAX_INDEX_ENTRIES: usize = 8;

/// The limits one run uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Overall deadline of the boot run.
    pub deadline: Duration,
    /// See [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`MIN_RATE_BYTES_PER_SEC`].
    pub min_rate: u64,
    /// See [`STALL_WINDOW`].
    pub stall_window: Duration,
    /// See [`MAX_BUNDLE_BYTES`].
    pub max_bundle_bytes: u64,
    /// See [`DNS_QUERY_TIMEOUT`].
    pub dns_query_timeout: Duration,
    /// See [`DNS_ATTEMPTS`].
    pub dns_attempts: usize,
    /// See [`REPORT_GRACE`].
    pub report_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            deadline: DEFAULT_DEADLINE,
            connect_timeout: CONNECT_TIMEOUT,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_timeout: HEADER_TIMEOUT,
            min_rate: MIN_RATE_BYTES_PER_SEC,
            stall_window: STALL_WINDOW,
            max_bundle_bytes: MAX_BUNDLE_BYTES,
            dns_query_timeout: DNS_QUERY_TIMEOUT,
            dns_attempts: DNS_ATTEMPTS,
            report_grace: REPORT_GRACE,
        }
    }
}
