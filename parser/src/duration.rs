//! Go's `time.ParseDuration` syntax (`1h30m`, `1.5s`, `300ms`, `0`), which BuildKit uses for
//! HEALTHCHECK intervals. Negative values parse (as Go does) and are reported by the caller.

use std::time::Duration;

/// A parsed duration in nanoseconds (signed, like Go's).
pub(crate) fn parse_go_duration(s: &str) -> Result<i128, String> {
    let orig = s;
    let mut s = s;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(format!("invalid duration `{orig}`"));
    }
    let mut total: i128 = 0;
    while !s.is_empty() {
        let int_len = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(r) = s.strip_prefix('.') {
            let n = r.len() - r.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            frac_part = &r[..n];
            s = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!("invalid duration `{orig}`"));
        }
        let unit_len = s.len()
            - s.trim_start_matches(|c: char| !c.is_ascii_digit() && c != '.')
                .len();
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration `{orig}`")),
            other => return Err(format!("unknown unit `{other}` in duration `{orig}`")),
        };
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse::<i128>()
                .map_err(|_| format!("invalid duration `{orig}`"))?
        };
        let mut value = int
            .checked_mul(scale)
            .ok_or_else(|| format!("invalid duration `{orig}`"))?;
        let mut unit_scale = scale;
        for d in frac_part.chars().take(30) {
            unit_scale /= 10;
            if unit_scale == 0 {
                break;
            }
            value += i128::from(d.to_digit(10).unwrap_or(0)) * unit_scale;
        }
        total += value;
        if total > i128::from(i64::MAX) {
            return Err(format!("invalid duration `{orig}`"));
        }
    }
    Ok(if neg { -total } else { total })
}

/// Convert a non-negative nanosecond count.
pub(crate) fn to_std(nanos: i128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration("300ms"), Ok(300_000_000));
        assert_eq!(parse_go_duration("-1s"), Ok(-1_000_000_000));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("1x").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration(".s").is_err());
    }
}
