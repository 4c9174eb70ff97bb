//! The clock: the only place in the broker that reads the time (a tidy rule checks it).
//!
//! Everything below the server (the protocol sessions, the core's state machines, the log)
//! receives time as an argument: the monotonic milliseconds of [`monotonic_ms`] for timers
//! and keep-alives, and the wall-clock milliseconds of [`wall_ms`] for record timestamps and
//! message expiry. Server code that measures a duration (commit latency, a plugin call's
//! cost) or waits until a deadline reads [`now`] here too, so that one file says every way
//! the broker learns the time.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The monotonic clock now.
pub fn now() -> Instant {
    Instant::now()
}

/// How long since `earlier` on the monotonic clock (zero if `earlier` is later).
pub fn since(earlier: Instant) -> Duration {
    now().saturating_duration_since(earlier)
}

/// How long until `deadline` on the monotonic clock (zero once it has passed).
pub fn until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(now())
}

/// Milliseconds since the Unix epoch, the time base of record timestamps and expiry.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `now` as milliseconds on the process's monotonic clock, counted from the first call: the
/// time the protocol sessions are given.
pub fn monotonic_ms(now: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(now.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
}

/// The time handed to the protocol sessions for an event at `now`: monotonic milliseconds and
/// the wall clock.
pub fn session_time(now: Instant) -> weir_core::mqtt_connection::Now {
    weir_core::mqtt_connection::Now {
        monotonic_ms: monotonic_ms(now),
        wall_ms: wall_ms(),
    }
}
