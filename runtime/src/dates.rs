//! Dates as Unix seconds: HTTP dates (RFC 9110's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`)
//! both ways, for `Last-Modified` and `If-Modified-Since`, and RFC 2822 dates with a numeric zone
//! (`Mon, 02 Dec 2026 00:45:01 +0000`, as in an ebuild tree's `metadata/timestamp.chk`).

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day count since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as `YYYYMMDD-HHMMSS` (UTC): the stamp of a run's default name.
pub fn format_compact(secs: u64) -> String {
    let secs = secs as i64;
    let (year, month, day) = civil(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// Unix seconds as `YYYY-MM-DD HH:MM` (UTC, the minute): a predicted time for people.
pub fn format_minute(secs: u64) -> String {
    let secs = secs as i64;
    let (year, month, day) = civil(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rest / 3_600,
        rest % 3_600 / 60
    )
}

/// Unix seconds as an HTTP date.
pub fn format_http(secs: u64) -> String {
    let secs = secs as i64;
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = civil(days);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// An HTTP date (IMF-fixdate) as Unix seconds; `None` for anything else.
pub fn parse_http(text: &str) -> Option<u64> {
    let (secs, zone) = parse_dated(text)?;
    (zone == "GMT").then_some(secs)?
}

/// An RFC 2822 date with a numeric zone (`Mon, 02 Dec 2026 00:45:01 +0100`) as Unix seconds;
/// `GMT` and `UTC` are taken too. `None` for anything else.
pub fn parse_rfc2822(text: &str) -> Option<u64> {
    let (secs, zone) = parse_dated(text)?;
    let offset: i64 = match zone {
        "GMT" | "UTC" | "Z" => 0,
        numeric => {
            let (sign, digits) = match numeric.as_bytes().first()? {
                b'+' => (1, &numeric[1..]),
                b'-' => (-1, &numeric[1..]),
                _ => return None,
            };
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let hours: i64 = digits[..2].parse().ok()?;
            let minutes: i64 = digits[2..].parse().ok()?;
            sign * (hours * 3_600 + minutes * 60)
        }
    };
    u64::try_from(secs? as i64 - offset).ok()
}

/// `Wdy, DD Mon YYYY HH:MM:SS ZONE`: the seconds of the date and time as if in UTC, and the zone.
fn parse_dated(text: &str) -> Option<(Option<u64>, &str)> {
    let mut parts = text.split_whitespace();
    let _weekday = parts.next()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hours: i64 = clock.next()?.parse().ok()?;
    let minutes: i64 = clock.next()?.parse().ok()?;
    let seconds: i64 = clock.next()?.parse().ok()?;
    let zone = parts.next()?;
    if parts.next().is_some()
        || !(1..=31).contains(&day)
        || hours > 23
        || minutes > 59
        || seconds > 60
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hours * 3_600 + minutes * 60 + seconds;
    Some((u64::try_from(secs).ok(), zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_match_the_standard_example() {
        assert_eq!(format_http(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_http("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        for secs in [0, 951_782_400, 1_796_212_345, 4_102_444_800] {
            assert_eq!(parse_http(&format_http(secs)), Some(secs), "{secs}");
        }
        assert_eq!(format_http(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        for junk in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http(junk), None, "{junk}");
        }
    }

    #[test]
    fn minutes_read_as_people_write_them() {
        assert_eq!(format_minute(0), "1970-01-01 00:00");
        assert_eq!(format_minute(1_796_310_059), "2026-12-03 15:00");
    }

    #[test]
    fn compact_stamps_name_the_utc_second() {
        assert_eq!(format_compact(0), "19700101-000000");
        assert_eq!(format_compact(784_111_777), "19941106-084937");
        // 2024-02-29 23:59:59, a leap day's last second.
        assert_eq!(format_compact(1_709_251_199), "20240229-235959");
    }

    #[test]
    fn an_ebuild_trees_timestamp_is_read_with_its_zone() {
        #[rustfmt::skip]
        let cases = [
            ("Sun, 06 Nov 1994 08:49:37 +0000", Some(784_111_777)),
            ("Sun, 06 Nov 1994 09:49:37 +0100", Some(784_111_777)),
            ("Sun, 06 Nov 1994 03:19:37 -0530", Some(784_111_777)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sun, 06 Nov 1994 08:49:37 UTC", Some(784_111_777)),
            ("Sun, 06 Nov 1994 08:49:37 +01", None),
            ("Sun, 06 Nov 1994 08:49:37 CET", None),
            ("Sun, 06 Nov 1994 08:49:37", None),
            ("Sun, 06 Nov 1994 08:49:37 +0000 extra", None),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_rfc2822(text), secs, "{text}");
        }
        // An HTTP date names GMT.
        assert_eq!(parse_http("Sun, 06 Nov 1994 08:49:37 +0000"), None);
    }
}
