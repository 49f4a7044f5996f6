//! [`Quota`]: how many requests, how fast, how bursty.

use std::error::Error;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// A rate: `count` requests per `period`, with bursts of up to `burst`
/// requests (GCRA: one request's allowance comes back every
/// `period / count`).
///
/// From code, with `NonZeroU32` so a zero quota can't be written:
///
/// ```
/// use std::num::NonZeroU32;
/// use watchpost::ratelimit::Quota;
///
/// const SIXTY: NonZeroU32 = NonZeroU32::new(60).unwrap();
/// const TEN: NonZeroU32 = NonZeroU32::new(10).unwrap();
/// let quota = Quota::per_minute(SIXTY).burst(TEN);
/// assert_eq!(quota.to_string(), "60/min burst 10");
/// ```
///
/// From configuration strings: `"60/min"`, `"10/s"`, `"1000/hour"`,
/// `"5/min burst 10"`. Without a burst, `N/period` allows a burst of `N`
/// (as governor does):
///
/// ```
/// use watchpost::ratelimit::Quota;
///
/// let quota: Quota = "5/min burst 10".parse()?;
/// assert_eq!(quota.burst_size().get(), 10);
/// assert!("5 per minute".parse::<Quota>().is_err());
/// # Ok::<(), watchpost::ratelimit::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    count: NonZeroU32,
    period: Period,
    burst: NonZeroU32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Period {
    Second,
    Minute,
    Hour,
    Day,
}

impl Period {
    const fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
            Period::Day => 86_400,
        })
    }

    const fn unit(self) -> &'static str {
        match self {
            Period::Second => "s",
            Period::Minute => "min",
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }
}

impl Quota {
    /// `count` requests per second, bursts of `count`.
    pub const fn per_second(count: NonZeroU32) -> Self {
        Self::new(count, Period::Second)
    }

    /// `count` requests per minute, bursts of `count`.
    pub const fn per_minute(count: NonZeroU32) -> Self {
        Self::new(count, Period::Minute)
    }

    /// `count` requests per hour, bursts of `count`.
    pub const fn per_hour(count: NonZeroU32) -> Self {
        Self::new(count, Period::Hour)
    }

    /// `count` requests per day, bursts of `count`.
    pub const fn per_day(count: NonZeroU32) -> Self {
        Self::new(count, Period::Day)
    }

    const fn new(count: NonZeroU32, period: Period) -> Self {
        Self {
            count,
            period,
            burst: count,
        }
    }

    /// Allows bursts of up to `burst` requests, keeping the rate.
    #[must_use]
    pub const fn burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = burst;
        self
    }

    /// Most requests allowed at once (the bucket's size).
    pub const fn burst_size(&self) -> NonZeroU32 {
        self.burst
    }

    /// Time for one request's allowance to come back: `period / count`.
    pub fn replenish_interval(&self) -> Duration {
        self.period.duration() / self.count.get()
    }

    /// Time for an empty bucket to fill: `burst × replenish_interval`. This is
    /// the window advertised in `RateLimit-Policy`.
    pub fn window(&self) -> Duration {
        self.replenish_interval().saturating_mul(self.burst.get())
    }

    pub(crate) fn to_governor(self) -> governor::Quota {
        // `replenish_interval` is at least 1 ns for any `count` up to u32::MAX
        // per second, so `with_period` can't refuse it; keep a sane fallback.
        governor::Quota::with_period(self.replenish_interval().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| governor::Quota::per_second(self.count))
            .allow_burst(self.burst)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.period.unit())?;
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl FromStr for Quota {
    type Err = QuotaError;

    /// Parses `N/unit` or `N/unit burst M`; units `s`, `sec`, `second`,
    /// `m`, `min`, `minute`, `h`, `hour`, `d`, `day` (plurals too), any case,
    /// spaces allowed around `/`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuotaError {
            input: s.to_owned(),
        };
        let text = s.trim();
        let (rate, burst) = match text.to_ascii_lowercase().split_once("burst") {
            Some((rate, burst)) => (rate.trim().to_owned(), Some(burst.trim().to_owned())),
            None => (text.to_ascii_lowercase(), None),
        };
        let (count, unit) = rate.split_once('/').ok_or_else(err)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| err())?;
        let period = match unit.trim() {
            "s" | "sec" | "secs" | "second" | "seconds" => Period::Second,
            "m" | "min" | "mins" | "minute" | "minutes" => Period::Minute,
            "h" | "hr" | "hour" | "hours" => Period::Hour,
            "d" | "day" | "days" => Period::Day,
            _ => return Err(err()),
        };
        let mut quota = Quota::new(count, period);
        if let Some(burst) = burst {
            quota = quota.burst(burst.parse().map_err(|_| err())?);
        }
        Ok(quota)
    }
}

/// A quota string that doesn't parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaError {
    input: String,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid rate limit {:?}: expected \"N/unit\" or \"N/unit burst M\" with N and M \
             positive integers and unit one of s, min, hour, day (e.g. \"60/min\", \"10/s\", \
             \"5/min burst 10\")",
            self.input
        )
    }
}

impl Error for QuotaError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn parses_the_documented_forms() {
        for (text, quota) in [
            ("60/min", Quota::per_minute(nz(60))),
            ("10/s", Quota::per_second(nz(10))),
            ("1000/hour", Quota::per_hour(nz(1000))),
            ("5/min burst 10", Quota::per_minute(nz(5)).burst(nz(10))),
            (
                " 5 / Minute  BURST 2 \n",
                Quota::per_minute(nz(5)).burst(nz(2)),
            ),
            ("100/day", Quota::per_day(nz(100))),
        ] {
            assert_eq!(text.parse::<Quota>(), Ok(quota), "{text}");
        }
    }

    #[test]
    fn rejects_nonsense_with_a_helpful_message() {
        for bad in [
            "",
            "60",
            "0/min",
            "60/fortnight",
            "-1/s",
            "5/min burst",
            "5/min burst 0",
            "a/s",
        ] {
            let err = bad.parse::<Quota>().unwrap_err();
            assert!(
                err.to_string().contains("expected \"N/unit\""),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["60/min", "10/s", "5/min burst 10", "1000/hour"] {
            assert_eq!(text.parse::<Quota>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn gcra_parameters() {
        let q: Quota = "120/min".parse().unwrap();
        assert_eq!(q.replenish_interval(), Duration::from_millis(500));
        assert_eq!(q.window(), Duration::from_secs(60));
        let g = q.to_governor();
        assert_eq!(
            (g.burst_size().get(), g.replenish_interval()),
            (120, Duration::from_millis(500))
        );
    }
}
