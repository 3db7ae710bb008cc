//! Timestamps of the API: milliseconds since the Unix epoch inside, RFC 3339 UTC outside.
//!
//! Responsible for: the clock (`now_ms`), rendering `2026-11-29T08:49:37.123Z`, and parsing
//! the RFC 3339 forms clients send (`expiresAt`, usage date ranges). Not responsible for
//! time zones other than UTC offsets given in the text.

use std::time::{SystemTime, UNIX_EPOCH};

use halyard_engine::date::civil_from_days;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Renders `ms` as RFC 3339 UTC with milliseconds.
pub fn iso(ms: u64) -> String {
    Iso(ms).to_string()
}

/// A timestamp that renders as RFC 3339 UTC with milliseconds without allocating: in a
/// response it serializes straight into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iso(pub u64);

impl Iso {
    /// The 24 ASCII bytes `YYYY-MM-DDTHH:MM:SS.mmmZ` (years past 9999 are capped).
    pub fn bytes(self) -> [u8; 24] {
        let ms = self.0;
        let secs = ms / 1000;
        let (y, mo, d) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        let y = y.min(9999);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        // Two digits at a time from a table: lists write two timestamps per item.
        let mut put2 = |at: usize, v: u64| {
            let i = (v % 100) as usize * 2;
            out[at..at + 2].copy_from_slice(&PAIRS[i..i + 2]);
        };
        put2(0, y / 100);
        put2(2, y);
        put2(5, mo);
        put2(8, d);
        put2(11, rem / 3600);
        put2(14, rem % 3600 / 60);
        put2(17, rem % 60);
        put2(21, ms % 100);
        out[20] = b'0' + (ms % 1000 / 100) as u8;
        out
    }
}

/// "00" to "99", back to back.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

impl std::fmt::Display for Iso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.bytes();
        // The bytes are ASCII digits and separators.
        f.write_str(std::str::from_utf8(&b).unwrap_or(""))
    }
}

impl serde::Serialize for Iso {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.bytes();
        s.serialize_str(std::str::from_utf8(&b).unwrap_or(""))
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm), for years >= 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

fn digits(s: &str, at: usize, n: usize) -> Option<u64> {
    let part = s.get(at..at + n)?;
    part.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| part.parse().ok())?
}

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into
/// milliseconds since the epoch. Dates before 1970 are refused.
pub fn parse(s: &str) -> Option<u64> {
    let (y, mo, d) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    if s.as_bytes().get(4) != Some(&b'-') || s.as_bytes().get(7) != Some(&b'-') {
        return None;
    }
    if y < 1970 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let day_ms = days_from_civil(y, mo, d) * 86_400_000;
    if s.len() == 10 {
        return Some(day_ms);
    }
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (h, mi, sec) = (digits(s, 11, 2)?, digits(s, 14, 2)?, digits(s, 17, 2)?);
    if h > 23 || mi > 59 || sec > 60 || &s[13..14] != ":" || &s[16..17] != ":" {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let ms_digits = &frac[..n.min(3)];
        millis = ms_digits.parse::<u64>().ok()? * 10u64.pow(3 - ms_digits.len() as u32);
        rest = &frac[n..];
    }
    let offset_ms: i64 = match rest.as_bytes() {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (digits(rest, 1, 2)?, digits(rest, 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let ms = ((oh * 60 + om) * 60_000) as i64;
            if *sign == b'-' {
                -ms
            } else {
                ms
            }
        }
        _ => return None,
    };
    let local = day_ms + (h * 3600 + mi * 60 + sec) * 1000 + millis;
    u64::try_from(local as i64 - offset_ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [0, 784_111_777_123, 951_782_400_000, 1_795_910_399_999] {
            assert_eq!(parse(&iso(ms)), Some(ms), "{}", iso(ms));
        }
        assert_eq!(iso(784_111_777_123), "1994-11-06T08:49:37.123Z");
        assert_eq!(iso(5), "1970-01-01T00:00:00.005Z");
        assert_eq!(iso(1_795_910_399_950), "2026-11-28T23:59:59.950Z");
        assert_eq!(iso(u64::MAX)[..4], *"9999");
    }

    proptest::proptest! {
        #[test]
        fn every_time_to_year_9999_round_trips(ms in 0u64..253_402_300_800_000) {
            proptest::prop_assert_eq!(parse(&iso(ms)), Some(ms));
        }
    }

    #[test]
    fn parses_forms_and_refuses_junk() {
        assert_eq!(parse("1970-01-02"), Some(86_400_000));
        assert_eq!(parse("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse("1970-01-01T00:00:01.5Z"), Some(1_500));
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-01-01T25:00:00Z",
            "1960-01-01",
            "2026-01-01T00:00:00",
            "x026-01-01",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+01:60",
            // Not ASCII where the offset's sign or colon would be (these once panicked).
            "2024-01-01T00:00:00\u{e9}X:00",
            "2024-01-01T00:00:00+0\u{e9}00",
            "2024-01-01T00:00:00.5\u{e9}X:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse("2026-01-01T00:00:00-23:59"), Some(1_767_311_940_000));
    }

    proptest::proptest! {
        #[test]
        fn any_text_after_the_start_of_a_time_is_parsed_or_refused_without_a_panic(
            ms in 0u64..253_402_300_800_000,
            cut in 10usize..24,
            tail in "\\PC{0,8}",
        ) {
            let text = iso(ms);
            let mut s = text[..cut.min(text.len())].to_string();
            s.push_str(&tail);
            let _ = parse(&s);
        }
    }
}
