//! Timestamps: nanoseconds since the Unix epoch (UTC), with RFC 3339 formatting
//! and parsing and `YYYY-MM-DD` dates, written out here so the document layer
//! needs no calendar crate.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

/// An instant, as nanoseconds since 1970-01-01T00:00:00Z. Stored records
/// write it as RFC 3339 text, which parses back for every instant from
/// [`Timestamp::MIN`] (1677-09-22) to [`Timestamp::MAX`] (2262-04-11); the
/// stores reject instants outside that range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// The last value [`Timestamp::now_monotonic`] returned.
static LAST: AtomicI64 = AtomicI64::new(i64::MIN);

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The earliest supported instant, 1677-09-22T00:00:00Z: the first
    /// midnight after the earliest nanosecond an `i64` holds (text of an
    /// instant earlier that day would not parse back).
    pub const MIN: Timestamp = Timestamp(-106_751 * SECS_PER_DAY * NANOS_PER_SEC);

    /// The latest supported instant, 2262-04-11T23:47:16.854775807Z.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// Whether the instant lies in [`Timestamp::MIN`]..=[`Timestamp::MAX`]
    /// (records holding it can be read back).
    pub fn is_supported(self) -> bool {
        self >= Timestamp::MIN
    }

    pub const fn from_unix_nanos(n: i64) -> Self {
        Timestamp(n)
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// From seconds and nanoseconds (as protobuf's Timestamp carries them);
    /// `None` outside the supported range ([`Timestamp::MIN`] to
    /// [`Timestamp::MAX`]).
    pub fn from_unix_parts(secs: i64, nanos: u32) -> Option<Self> {
        if nanos >= NANOS_PER_SEC as u32 {
            return None;
        }
        secs.checked_mul(NANOS_PER_SEC)
            .and_then(|n| n.checked_add(nanos as i64))
            .map(Timestamp)
            .filter(|t| t.is_supported())
    }

    /// Seconds and nanoseconds (nanoseconds always in 0..1e9).
    pub fn unix_parts(self) -> (i64, u32) {
        (
            self.0.div_euclid(NANOS_PER_SEC),
            self.0.rem_euclid(NANOS_PER_SEC) as u32,
        )
    }

    /// The current time of the system clock.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// The current time, strictly greater than any value this function returned
    /// before in this process (so records stored in sequence order by it even if
    /// the clock steps back or two calls fall in the same nanosecond).
    pub fn now_monotonic() -> Self {
        let now = Timestamp::now().0;
        let mut last = LAST.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Timestamp(next),
                Err(seen) => last = seen,
            }
        }
    }

    /// The current time, never earlier than a value [`Timestamp::now_monotonic`]
    /// already returned: an instant at which everything stored so far by this
    /// process has happened.
    pub fn now_observed() -> Self {
        Timestamp(Timestamp::now().0.max(LAST.load(Ordering::Relaxed)))
    }

    /// Midnight UTC at the start of a calendar date; `None` for an invalid date
    /// or one outside the representable range.
    pub fn from_date(year: i64, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        days_from_civil(year, month, day)
            .checked_mul(SECS_PER_DAY * NANOS_PER_SEC)
            .map(Timestamp)
    }

    /// Parses `YYYY-MM-DD` as midnight UTC.
    pub fn parse_date(s: &str) -> Result<Self, TimeError> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(TimeError::format(s, "expected YYYY-MM-DD"));
        }
        let year = digits(&b[0..4]).ok_or_else(|| TimeError::format(s, "bad year"))?;
        let month = digits(&b[5..7]).ok_or_else(|| TimeError::format(s, "bad month"))?;
        let day = digits(&b[8..10]).ok_or_else(|| TimeError::format(s, "bad day"))?;
        Timestamp::from_date(year as i64, month, day)
            .ok_or_else(|| TimeError::format(s, "no such date"))
    }

    /// Parses an RFC 3339 date-time (`2025-01-31T12:00:00Z`,
    /// `2025-01-31T12:00:00.5+01:00`) or a bare `YYYY-MM-DD` (midnight UTC).
    pub fn parse(s: &str) -> Result<Self, TimeError> {
        if s.len() == 10 {
            return Timestamp::parse_date(s);
        }
        let b = s.as_bytes();
        if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return Err(TimeError::format(s, "expected YYYY-MM-DDTHH:MM:SSZ"));
        }
        let date = Timestamp::parse_date(&s[..10])?;
        let hour = digits(&b[11..13]).filter(|h| *h < 24);
        let min = digits(&b[14..16]).filter(|m| *m < 60);
        let sec = digits(&b[17..19]).filter(|s| *s < 61);
        let (Some(hour), Some(min), Some(sec)) = (hour, min, sec) else {
            return Err(TimeError::format(s, "bad time of day"));
        };
        let mut rest = &b[19..];
        let mut frac_nanos: i64 = 0;
        if rest.first() == Some(&b'.') {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return Err(TimeError::format(s, "bad fraction of a second"));
            }
            let mut scale = NANOS_PER_SEC;
            for &c in &rest[1..=n] {
                scale /= 10;
                frac_nanos += (c - b'0') as i64 * scale;
            }
            rest = &rest[1 + n..];
        }
        let offset_secs: i64 = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let h = digits(&[*h1, *h2]).filter(|h| *h < 24);
                let m = digits(&[*m1, *m2]).filter(|m| *m < 60);
                let (Some(h), Some(m)) = (h, m) else {
                    return Err(TimeError::format(s, "bad UTC offset"));
                };
                let off = (h as i64 * 60 + m as i64) * 60;
                if *sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return Err(TimeError::format(s, "expected Z or a +HH:MM offset")),
        };
        let secs = hour as i64 * 3600 + min as i64 * 60 + sec as i64 - offset_secs;
        secs.checked_mul(NANOS_PER_SEC)
            .and_then(|n| n.checked_add(frac_nanos))
            .and_then(|n| date.0.checked_add(n))
            .map(Timestamp)
            .ok_or_else(|| TimeError::format(s, "out of range"))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with as many fraction digits as needed (none, 3, 6 or 9).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = self.unix_parts();
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            tod / 3600,
            tod / 60 % 60,
            tod % 60
        )?;
        if nanos != 0 {
            if nanos % 1_000_000 == 0 {
                write!(f, ".{:03}", nanos / 1_000_000)?;
            } else if nanos % 1_000 == 0 {
                write!(f, ".{:06}", nanos / 1_000)?;
            } else {
                write!(f, ".{nanos:09}")?;
            }
        }
        f.write_str("Z")
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    /// Accepts what `Serialize` writes (RFC 3339) and integer nanoseconds.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 date-time or nanoseconds since the epoch")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Timestamp, E> {
                i64::try_from(n)
                    .map(Timestamp)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string that is not a valid date or date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date-time {input:?}: {reason}")]
pub struct TimeError {
    pub input: String,
    pub reason: &'static str,
}

impl TimeError {
    fn format(input: &str, reason: &'static str) -> Self {
        TimeError {
            input: input.chars().take(64).collect(),
            reason,
        }
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
    })
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00Z");
        let t = Timestamp::parse("2024-02-29T23:59:58.25Z").unwrap();
        assert_eq!(t.to_string(), "2024-02-29T23:59:58.250Z");
        assert_eq!(t.unix_parts(), (1_709_251_198, 250_000_000));
        let d = Timestamp::parse_date("2025-01-01").unwrap();
        assert_eq!(d.unix_parts(), (1_735_689_600, 0));
        let off = Timestamp::parse("2025-01-01T01:30:00+01:30").unwrap();
        assert_eq!(off, d);
        let before = Timestamp::parse("1969-12-31T23:59:59.000000001Z").unwrap();
        assert_eq!(before.unix_nanos(), -999_999_999);
        assert_eq!(before.to_string(), "1969-12-31T23:59:59.000000001Z");
    }

    #[test]
    fn rejects_invalid_dates() {
        for bad in [
            "2023-02-29",
            "2025-13-01",
            "2025-00-10",
            "2025-1-01",
            "20250101",
            "2025-01-01T25:00:00Z",
            "2025-01-01T10:00:00",
            "2025-01-01T10:00:00.Z",
            "2025-01-01T10:00:00+0100",
            "",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn civil_conversion_round_trips_over_centuries() {
        for days in (-200_000..200_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y, m));
        }
    }

    #[test]
    fn the_supported_range_round_trips_through_text() {
        assert_eq!(Timestamp::MIN.to_string(), "1677-09-22T00:00:00Z");
        assert_eq!(Timestamp::MAX.to_string(), "2262-04-11T23:47:16.854775807Z");
        for t in [
            Timestamp::MIN,
            Timestamp::from_unix_nanos(Timestamp::MIN.unix_nanos() + 1),
            Timestamp::MAX,
            Timestamp::from_unix_nanos(i64::MAX - 1),
        ] {
            assert!(t.is_supported());
            assert_eq!(Timestamp::parse(&t.to_string()), Ok(t), "{t}");
        }
        // Earlier instants exist as i64 but their text does not parse back.
        let early = Timestamp::from_unix_nanos(Timestamp::MIN.unix_nanos() - 1);
        assert!(!early.is_supported());
        assert!(Timestamp::parse(&early.to_string()).is_err());
        assert!(!Timestamp::from_unix_nanos(i64::MIN).is_supported());
        let (s, n) = Timestamp::MIN.unix_parts();
        assert_eq!(Timestamp::from_unix_parts(s, n), Some(Timestamp::MIN));
        assert_eq!(Timestamp::from_unix_parts(s - 1, n), None);
        assert_eq!(Timestamp::from_unix_parts(s - 1, 999_999_999), None);
        let (s, n) = Timestamp::MAX.unix_parts();
        assert_eq!(Timestamp::from_unix_parts(s, n), Some(Timestamp::MAX));
        assert_eq!(Timestamp::from_unix_parts(s + 1, 0), None);
    }

    #[test]
    fn monotonic_clock_never_repeats() {
        let mut last = Timestamp::now_monotonic();
        for _ in 0..10_000 {
            let t = Timestamp::now_monotonic();
            assert!(t > last);
            last = t;
        }
    }
}
