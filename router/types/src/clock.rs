//! Wall-clock helpers: Unix time in the units the gateway stores and sends. Durations and
//! deadlines use tokio's clock instead (so tests can pause it); these are for timestamps only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it): a seed, not a timestamp.
pub fn unix_nanos() -> u64 {
    since_epoch().as_nanos() as u64
}

/// Seconds since the Unix epoch, for `created` fields.
pub fn unix_now() -> u64 {
    since_epoch().as_secs()
}

/// Milliseconds since the Unix epoch: the request log's and the budget periods' timestamps.
pub fn now_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// A duration in (fractional) milliseconds, as logged and reported.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The start (unix ms) of the UTC day holding `ts_ms`.
pub fn utc_day_start_ms(ts_ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    ts_ms.div_euclid(DAY) * DAY
}

/// The start (unix ms) of the UTC calendar month holding `ts_ms` (0 for instants outside the
/// calendar's range, which no clock reports).
pub fn utc_month_start_ms(ts_ms: i64) -> i64 {
    let utc = jiff::tz::Offset::UTC;
    jiff::Timestamp::from_millisecond(ts_ms)
        .and_then(|ts| {
            let first = utc.to_datetime(ts).date().first_of_month();
            utc.to_timestamp(first.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_or(0, |ts| ts.as_millisecond())
}

/// `secs` since the Unix epoch as RFC 3339 UTC, e.g. `2025-08-21T12:40:59Z`.
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| "1970-01-01T00:00:00Z".to_owned(), |ts| ts.to_string())
}

/// Unix ms as RFC 3339 UTC with milliseconds when there are any (`2025-08-21T12:40:59Z`,
/// `…59.250Z`); instants outside the calendar's range are clamped to the epoch.
pub fn rfc3339_ms(ts_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ts_ms)
        .map_or_else(|_| "1970-01-01T00:00:00Z".to_owned(), |ts| ts.to_string())
}

/// An RFC 3339 instant (`2025-08-21T12:40:59Z`, `…+02:00`) as unix ms; `None` if it is not one.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|ts| ts.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_at_utc_day_and_month_boundaries() {
        // 2026-11-22T15:30:00Z
        let t = 1_795_361_400_000;
        assert_eq!(utc_day_start_ms(t), 1_795_305_600_000); // 2026-11-22T00:00Z
        assert_eq!(utc_month_start_ms(t), 1_793_491_200_000); // 2026-11-01T00:00Z
        // 2024-02-29T23:59:59Z → February 1st; leap years handled.
        assert_eq!(utc_month_start_ms(1_709_251_199_000), 1_706_745_600_000);
        assert_eq!(utc_month_start_ms(0), 0);
    }

    #[test]
    fn rfc3339_ms_round_trips() {
        assert_eq!(rfc3339_ms(1_755_780_059_000), "2025-08-21T12:40:59Z");
        assert_eq!(
            parse_rfc3339_ms("2025-08-21T12:40:59Z"),
            Some(1_755_780_059_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2025-08-21T14:40:59.5+02:00"),
            Some(1_755_780_059_500)
        );
        assert_eq!(parse_rfc3339_ms("2025-08-21"), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_755_780_059), "2025-08-21T12:40:59Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
