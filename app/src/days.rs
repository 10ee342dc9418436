//! UTC calendar days as people write them (`YYYY-MM-DD`) and as the code counts them (days
//! since 1970-01-01): the usage export's period, a key's last day. Shared by the server and the
//! browser, so a day is read and written the same way on both sides.

/// A UTC calendar day as `YYYY-MM-DD` ↔ days since 1970-01-01.
pub fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let (y, m, d): (i64, i64, i64) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // 2026-02-31 is not a day: it must print back as itself.
    (format_day(days) == format!("{y:04}-{m:02}-{d:02}")).then_some(days)
}

/// Howard Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The last day (UTC, `YYYY-MM-DD`) a key or token that stops working at `expires_at` works on.
/// One given a last day ends at the next midnight (that day is the last); a short-lived one (the
/// playground's, minutes) ends during its day, which is then the last, not the day before.
pub fn last_day_of(expires_at: i64) -> String {
    format_day((expires_at - 1).div_euclid(86_400))
}

pub fn format_day(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD HH:MM` or `YYYY-MM-DD` (UTC, as [`format_utc`] writes it) as a Unix second.
pub fn parse_utc(s: &str) -> Option<i64> {
    let s = s.trim();
    let (day, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00"));
    let (h, m) = time.trim_end_matches('Z').split_once(':')?;
    let (h, m) = (h.parse::<i64>().ok().filter(|h| (0..24).contains(h))?, m.get(..2)?.parse::<i64>().ok().filter(|m| (0..60).contains(m))?);
    Some(parse_day(day)? * 86_400 + h * 3600 + m * 60)
}

/// A Unix second as `YYYY-MM-DD HH:MM` (UTC).
pub fn format_utc(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!("{} {:02}:{:02}", format_day(days), rest / 3600, rest / 60 % 60)
}

/// A Unix second as RFC 3339 in UTC (`YYYY-MM-DDTHH:MM:SSZ`), as exports and the API give times.
pub fn format_rfc3339(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!("{}T{:02}:{:02}:{:02}Z", format_day(days), rest / 3600, rest / 60 % 60, rest % 60)
}

/// The calendar period (UTC) a quota counts in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    #[default]
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            _ => None,
        }
    }
    /// The Unix second the period holding `secs` began (00:00 UTC of the day, or of the
    /// month's first day).
    pub fn start(self, secs: i64) -> i64 {
        let day = secs.div_euclid(86_400);
        match self {
            Period::Day => day * 86_400,
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1) * 86_400
            }
        }
    }
    /// The Unix second the period holding `secs` ends (the next one's start).
    pub fn end(self, secs: i64) -> i64 {
        match self {
            Period::Day => self.start(secs) + 86_400,
            Period::Month => {
                let (y, m, _) = civil_from_days(secs.div_euclid(86_400));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * 86_400
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_and_end_on_utc_calendar_boundaries() {
        let at = |day: &str, h: i64| parse_day(day).unwrap() * 86_400 + h * 3600;
        assert_eq!(Period::Day.start(at("2026-12-02", 13)), at("2026-12-02", 0));
        assert_eq!(Period::Day.end(at("2026-12-02", 13)), at("2026-12-03", 0));
        assert_eq!(Period::Month.start(at("2026-12-31", 23)), at("2026-12-01", 0));
        assert_eq!(Period::Month.end(at("2026-12-31", 23)), at("2027-01-01", 0), "December ends with the year");
        assert_eq!(Period::Month.end(at("2028-02-10", 0)), at("2028-03-01", 0), "a leap February");
        assert_eq!(Period::Month.start(at("2027-01-01", 0)), at("2027-01-01", 0), "a period starts at its own first second");
    }

    #[test]
    fn utc_times_read_back_what_format_utc_writes() {
        let t = parse_day("2027-01-02").unwrap() * 86_400 + 13 * 3600 + 5 * 60;
        assert_eq!(parse_utc(&format_utc(t)), Some(t));
        assert_eq!(parse_utc("2027-01-02"), Some(t - 13 * 3600 - 5 * 60));
        assert_eq!(parse_utc("2027-01-02T13:05Z"), Some(t));
        for bad in ["2027-01-02 24:00", "2027-01-02 13:60", "tomorrow", "2027-13-01 00:00", "2027-01-02 1"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_credential_s_last_day_is_the_day_it_still_works_on() {
        let at = |day: &str, secs: i64| parse_day(day).unwrap() * 86_400 + secs;
        assert_eq!(last_day_of(at("2026-12-04", 0)), "2026-12-03", "given a last day: ends at the next midnight");
        assert_eq!(last_day_of(at("2026-12-03", 12 * 3600 + 52 * 60)), "2026-12-03", "a 15-minute key ends the same day");
        assert_eq!(last_day_of(at("2026-12-03", 1)), "2026-12-03");
    }
}
