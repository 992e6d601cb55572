//! Budget periods: the UTC day and the UTC month a moment falls in, when each resets, and how
//! they are written (`2026-12-02`, `2026-12`).
//!
//! Calendar arithmetic by hand (Howard Hinnant's `days_from_civil` / `civil_from_days`, exact for
//! the proleptic Gregorian calendar, shared with SigV4's date handling): UTC days and months are
//! all that is needed, and a date crate would bring time zones and formatting this never uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in a day.
const DAY: i64 = 86_400;

/// The day (days since 1970-01-01) and month (months since 0000-01) a moment falls in, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Periods {
    pub(crate) day: i64,
    pub(crate) month: i64,
}

impl Periods {
    /// The periods of `at`.
    pub(crate) fn at(at: SystemTime) -> Periods {
        let secs = match at.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        let day = secs.div_euclid(DAY);
        let (y, m, _) = civil_from_days(day);
        Periods {
            day,
            month: y * 12 + (m - 1),
        }
    }

    /// The periods now.
    pub(crate) fn now() -> Periods {
        Periods::at(SystemTime::now())
    }

    /// `2026-12-02`.
    pub(crate) fn day_label(&self) -> String {
        let (y, m, d) = civil_from_days(self.day);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// `2026-12`.
    pub(crate) fn month_label(&self) -> String {
        format!(
            "{:04}-{:02}",
            self.month.div_euclid(12),
            self.month.rem_euclid(12) + 1
        )
    }

    /// When the day ends (the next UTC midnight), in seconds since the epoch.
    pub(crate) fn day_end(&self) -> i64 {
        (self.day + 1) * DAY
    }

    /// When the month ends (the first of the next month, UTC), in seconds since the epoch.
    pub(crate) fn month_end(&self) -> i64 {
        let next = self.month + 1;
        days_from_civil(next.div_euclid(12), next.rem_euclid(12) + 1, 1) * DAY
    }
}

/// The time from `now` until `end` (seconds since the epoch), at least one second.
pub(crate) fn until(end: i64, now: SystemTime) -> Duration {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(end).unwrap_or(0));
    at.duration_since(now)
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1))
}

/// RFC 3339 in UTC: `2026-12-03T00:00:00Z`.
pub(crate) fn rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    let s = secs.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

pub(crate) use crate::sigv4::{civil_from_days, days_from_civil};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_round_trip_and_reset_at_utc_midnight() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for day in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        // 2024-02-29T23:59:59Z
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        let p = Periods::at(leap);
        assert_eq!(
            (p.day_label(), p.month_label()),
            ("2024-02-29".into(), "2024-02".into())
        );
        assert_eq!(rfc3339(p.day_end()), "2024-03-01T00:00:00Z");
        assert_eq!(rfc3339(p.month_end()), "2024-03-01T00:00:00Z");
        let dec = Periods::at(UNIX_EPOCH + Duration::from_secs(1_798_761_600)); // 2027-01-01
        assert_eq!(dec.month_label(), "2027-01");
        let p = Periods::at(UNIX_EPOCH + Duration::from_secs(1_798_761_599));
        assert_eq!(
            (p.month_label(), rfc3339(p.month_end())),
            ("2026-12".into(), "2027-01-01T00:00:00Z".into())
        );
        assert_eq!(
            until(Periods::at(leap).day_end(), leap),
            Duration::from_secs(1)
        );
        assert_eq!(
            until(p.day_end(), leap),
            Duration::from_secs(1_798_761_600 - 1_709_251_199)
        );
        assert_eq!(
            until(0, leap),
            Duration::from_secs(1),
            "never less than a second"
        );
    }
}
