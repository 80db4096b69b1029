//! EventBridge schedule expressions: `rate(5 minutes)` and
//! `cron(minutes hours day-of-month month day-of-week year)`, evaluated in a time zone.
//!
//! Cron follows EventBridge's rules: six fields; one of day-of-month and day-of-week must
//! be `?`; day-of-week counts 1 = SUN … 7 = SAT (or SUN–SAT); day-of-month allows `L`
//! (last day), `LW` (last weekday) and `15W` (weekday nearest the 15th); day-of-week
//! allows `6L` (last Friday) and `6#3` (third Friday); `,` `-` `*` `/` everywhere.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Why an expression was refused; shown to the user as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid schedule expression '{expr}': {why}")]
pub struct ExprError {
    pub expr: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every `period_ms`, counted from the schedule's creation.
    Rate {
        period_ms: i64,
    },
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq)]
enum DayOfMonth {
    Any,
    Days(u64),
    Last,
    LastWeekday,
    NearestWeekday(i8),
}

#[derive(Debug, Clone, PartialEq)]
enum DayOfWeek {
    Any,
    /// Bits 1..=7, 1 = Sunday.
    Days(u64),
    /// The last such weekday of the month.
    Last(u8),
    /// The n-th such weekday of the month.
    Nth(u8, u8),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    dom: DayOfMonth,
    months: u64,
    dow: DayOfWeek,
    /// Years 1970..=2199 as offsets from 1970.
    years: Vec<bool>,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const YEAR_MIN: i32 = 1970;
const YEAR_MAX: i32 = 2199;

fn value(token: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, String> {
    let upper = token.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return Ok(lo + i as u32);
    }
    let v: u32 = token
        .parse()
        .map_err(|_| format!("'{token}' is not a number"))?;
    if v < lo || v > hi {
        return Err(format!("{v} is outside {lo}-{hi}"));
    }
    Ok(v)
}

/// Parses `*`, `a`, `a-b`, `*/n`, `a/n`, `a-b/n` and lists of them into a set of values.
fn set(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("'{s}' is not a step"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (start, end) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, lo, hi, names)?, value(b, lo, hi, names)?)
        } else {
            let v = value(range, lo, hi, names)?;
            (v, if part.contains('/') { hi } else { v })
        };
        if start > end {
            return Err(format!("range {start}-{end} runs backwards"));
        }
        out.extend((start..=end).step_by(step as usize));
    }
    Ok(out)
}

fn bits(values: &[u32]) -> u64 {
    values.iter().fold(0, |acc, v| acc | (1u64 << v))
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, ExprError> {
        let err = |why: String| ExprError {
            expr: expr.chars().take(256).collect(),
            why,
        };
        let trimmed = expr.trim();
        if let Some(inner) = trimmed
            .strip_prefix("rate(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let mut parts = inner.split_whitespace();
            let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err(
                    "expected rate(VALUE UNIT), such as rate(5 minutes)".into()
                ));
            };
            let n: i64 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| err(format!("'{n}' is not a positive whole number")))?;
            let unit_ms = match unit {
                "minute" | "minutes" => 60_000,
                "hour" | "hours" => 3_600_000,
                "day" | "days" => 86_400_000,
                _ => {
                    return Err(err(format!(
                        "unit '{unit}' is not minute(s), hour(s) or day(s)"
                    )))
                }
            };
            if (n == 1) == unit.ends_with('s') {
                return Err(err(format!(
                    "use the singular unit for 1 and the plural otherwise ('{n} {unit}')"
                )));
            }
            let period_ms = n
                .checked_mul(unit_ms)
                .filter(|p| *p <= 100 * 365 * 86_400_000)
                .ok_or_else(|| err("the period is too long".into()))?;
            return Ok(Schedule::Rate { period_ms });
        }
        let Some(inner) = trimmed
            .strip_prefix("cron(")
            .and_then(|r| r.strip_suffix(')'))
        else {
            return Err(err("expected rate(...) or cron(...)".into()));
        };
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minutes, hours, dom, months, dow, years] = fields.as_slice() else {
            return Err(err(format!(
                "cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {}",
                fields.len()
            )));
        };
        let minutes = bits(&set(minutes, 0, 59, &[]).map_err(|w| err(format!("minutes: {w}")))?);
        let hours = bits(&set(hours, 0, 23, &[]).map_err(|w| err(format!("hours: {w}")))?);
        let months = bits(&set(months, 1, 12, &MONTHS).map_err(|w| err(format!("month: {w}")))?);
        let dom = match *dom {
            "?" => DayOfMonth::Any,
            "L" => DayOfMonth::Last,
            "LW" => DayOfMonth::LastWeekday,
            d if d.ends_with('W') => {
                let n = value(&d[..d.len() - 1], 1, 31, &[])
                    .map_err(|w| err(format!("day-of-month: {w}")))?;
                DayOfMonth::NearestWeekday(n as i8)
            }
            d => DayOfMonth::Days(bits(
                &set(d, 1, 31, &[]).map_err(|w| err(format!("day-of-month: {w}")))?,
            )),
        };
        let dow = match *dow {
            "?" => DayOfWeek::Any,
            d if d.len() > 1 && d.ends_with('L') => {
                let n = value(&d[..d.len() - 1], 1, 7, &DAYS)
                    .map_err(|w| err(format!("day-of-week: {w}")))?;
                DayOfWeek::Last(n as u8)
            }
            d if d.contains('#') => {
                let (a, b) = d.split_once('#').unwrap_or_default();
                let day = value(a, 1, 7, &DAYS).map_err(|w| err(format!("day-of-week: {w}")))?;
                let nth = value(b, 1, 5, &[]).map_err(|w| err(format!("day-of-week: {w}")))?;
                DayOfWeek::Nth(day as u8, nth as u8)
            }
            d => DayOfWeek::Days(bits(
                &set(d, 1, 7, &DAYS).map_err(|w| err(format!("day-of-week: {w}")))?,
            )),
        };
        if (dom == DayOfMonth::Any) == (dow == DayOfWeek::Any) {
            return Err(err(
                "exactly one of day-of-month and day-of-week must be '?'".into(),
            ));
        }
        let year_values = set(years, YEAR_MIN as u32, YEAR_MAX as u32, &[])
            .map_err(|w| err(format!("year: {w}")))?;
        let mut years = vec![false; (YEAR_MAX - YEAR_MIN + 1) as usize];
        for y in year_values {
            years[(y as i32 - YEAR_MIN) as usize] = true;
        }
        Ok(Schedule::Cron(Box::new(Cron {
            minutes,
            hours,
            dom,
            months,
            dow,
            years,
        })))
    }

    /// The first fire strictly after `after_ms`. Rates count from `anchor_ms`.
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64, tz: &TimeZone) -> Option<i64> {
        match self {
            Schedule::Rate { period_ms } => {
                let k = if after_ms < anchor_ms {
                    1
                } else {
                    (after_ms - anchor_ms) / period_ms + 1
                };
                Some(anchor_ms + k * period_ms)
            }
            Schedule::Cron(cron) => cron.next_after(after_ms, tz),
        }
    }
}

fn sunday_one(w: Weekday) -> u8 {
    w.to_sunday_one_offset() as u8
}

impl Cron {
    fn day_matches(&self, date: Date) -> bool {
        let day = date.day();
        let last = date.last_of_month().day();
        let dom_ok = match &self.dom {
            DayOfMonth::Any => true,
            DayOfMonth::Days(b) => b & (1 << day) != 0,
            DayOfMonth::Last => day == last,
            DayOfMonth::LastWeekday => {
                let mut d = date.last_of_month();
                while matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
                    d = d.yesterday().unwrap_or(d);
                }
                d == date
            }
            DayOfMonth::NearestWeekday(n) => {
                let target = (*n).min(last);
                let Ok(t) = Date::new(date.year(), date.month(), target) else {
                    return false;
                };
                let nearest = match t.weekday() {
                    Weekday::Saturday if target == 1 => {
                        t.checked_add(jiff::Span::new().days(2)).unwrap_or(t)
                    }
                    Weekday::Saturday => t.yesterday().unwrap_or(t),
                    Weekday::Sunday if target == last => {
                        t.checked_sub(jiff::Span::new().days(2)).unwrap_or(t)
                    }
                    Weekday::Sunday => t.tomorrow().unwrap_or(t),
                    _ => t,
                };
                nearest == date
            }
        };
        let weekday = sunday_one(date.weekday());
        let dow_ok = match &self.dow {
            DayOfWeek::Any => true,
            DayOfWeek::Days(b) => b & (1 << weekday) != 0,
            DayOfWeek::Last(w) => *w == weekday && day + 7 > last,
            DayOfWeek::Nth(w, n) => *w == weekday && (day - 1) / 7 + 1 == *n as i8,
        };
        dom_ok && dow_ok
    }

    fn next_after(&self, after_ms: i64, tz: &TimeZone) -> Option<i64> {
        let start = Timestamp::from_millisecond(after_ms)
            .ok()?
            .to_zoned_datetime(tz.clone());
        let mut date = start.date();
        // Five years of days bounds the search; a schedule with no fire in that span (say,
        // February 30th, or only past years) never fires.
        for _ in 0..(366 * 5) {
            let year_ok = (YEAR_MIN..=YEAR_MAX).contains(&(date.year() as i32))
                && self.years[(date.year() as i32 - YEAR_MIN) as usize];
            if year_ok && self.months & (1 << date.month()) != 0 && self.day_matches(date) {
                for hour in 0..24 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in 0..60 {
                        if self.minutes & (1 << minute) == 0 {
                            continue;
                        }
                        let zoned = date
                            .at(hour, minute, 0, 0)
                            .to_zoned_datetime(tz.clone())
                            .ok()?;
                        let ms = zoned.timestamp().as_millisecond();
                        if ms > after_ms {
                            return Some(ms);
                        }
                    }
                }
            }
            if date.year() as i32 > YEAR_MAX {
                return None;
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str, tz: &TimeZone) -> i64 {
        let dt: jiff::civil::DateTime = text.parse().unwrap();
        dt.to_zoned_datetime(tz.clone())
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    /// The next `n` fires after `from` (local time in `tz`), as local times.
    fn check(expr: &str, tz: &str, from: &str, expect: &[&str]) {
        let tz = TimeZone::get(tz).unwrap();
        let s = Schedule::parse(expr).unwrap();
        let mut t = ms(from, &tz);
        for e in expect {
            t = s
                .next_after(t, 0, &tz)
                .unwrap_or_else(|| panic!("{expr}: no fire after {t}"));
            let got = Timestamp::from_millisecond(t)
                .unwrap()
                .to_zoned_datetime(tz.clone())
                .datetime();
            assert_eq!(got.to_string(), *e, "{expr}");
        }
    }

    #[test]
    fn cron_fires() {
        check(
            "cron(0 12 * * ? *)",
            "UTC",
            "2026-11-26T13:00",
            &["2026-11-27T12:00:00", "2026-11-28T12:00:00"],
        );
        check(
            "cron(0/15 * * * ? *)",
            "UTC",
            "2026-11-26T10:07",
            &["2026-11-26T10:15:00", "2026-11-26T10:30:00"],
        );
        check(
            "cron(0 9 ? * MON-FRI *)",
            "UTC",
            "2026-11-27T10:00",
            &["2026-11-30T09:00:00"],
        );
        check(
            "cron(0 0 L * ? *)",
            "UTC",
            "2027-02-01T00:00",
            &["2027-02-28T00:00:00", "2027-03-31T00:00:00"],
        );
        check(
            "cron(0 0 ? * 6#3 *)",
            "UTC",
            "2026-11-01T00:00",
            &["2026-11-20T00:00:00"],
        );
        check(
            "cron(0 0 ? * 6L *)",
            "UTC",
            "2026-11-01T00:00",
            &["2026-11-27T00:00:00"],
        );
        check(
            "cron(0 0 LW * ? *)",
            "UTC",
            "2026-05-01T00:00",
            &["2026-05-29T00:00:00"],
        );
        check(
            "cron(0 0 15W * ? *)",
            "UTC",
            "2026-11-01T00:00",
            &["2026-11-16T00:00:00"],
        );
        // Local noon in Paris is 11:00 UTC in winter and 10:00 UTC in summer.
        check(
            "cron(0 12 * * ? *)",
            "Europe/Paris",
            "2026-03-28T13:00",
            &["2026-03-29T12:00:00", "2026-03-30T12:00:00"],
        );
        check(
            "cron(0 0 1 1 ? 2027)",
            "UTC",
            "2026-11-26T00:00",
            &["2027-01-01T00:00:00"],
        );
    }

    #[test]
    fn rates_count_from_the_anchor() {
        let s = Schedule::parse("rate(5 minutes)").unwrap();
        assert_eq!(s.next_after(1_000, 1_000, &TimeZone::UTC), Some(301_000));
        assert_eq!(s.next_after(301_000, 1_000, &TimeZone::UTC), Some(601_000));
        assert_eq!(s.next_after(0, 1_000, &TimeZone::UTC), Some(301_000));
    }

    #[test]
    fn refuses_what_eventbridge_refuses() {
        for bad in [
            "rate(0 minutes)",
            "rate(5 minute)",
            "rate(1 minutes)",
            "rate(5 weeks)",
            "rate(x minutes)",
            "rate()",
            "cron(0 12 * * * *)",
            "cron(0 12 ? * ? *)",
            "cron(60 * * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 0 32 * ? *)",
            "cron(0 0 ? * 8 *)",
            "cron(0 0 * * ?)",
            "cron(5-1 * * * ? *)",
            "cron(*/0 * * * ? *)",
            "every minute",
            "",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        assert!(Schedule::parse("cron(0 0 30 2 ? *)")
            .unwrap()
            .next_after(0, 0, &TimeZone::UTC)
            .is_none());
    }
}
