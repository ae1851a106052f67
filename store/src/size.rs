//! Byte sizes in and out: the one parser for sizes people type (`--memory`, `--keep-storage`,
//! `RBUILD_MAX_LAYER_SIZE`, `RBUILD_MAX_DOCKERFILE_SIZE`) and the one formatter for sizes
//! rbuild prints (`images`, `history`, `system df`, prune totals, build summaries).
//!
//! # Grammar ([`parse`])
//!
//! `NUMBER [ ] [UNIT]`, case-insensitive, as docker's `go-units` reads it:
//!
//! - `NUMBER`: digits with an optional fraction (`1.5`); the byte count is truncated.
//! - one optional space between number and unit (`512 k`).
//! - `UNIT`: none or `b` (bytes); `k`, `m`, `g`, `t`, `p`, each optionally followed by `b`
//!   (`kb`, `MB`), whose multiple is the caller's [`Base`]; or `kib`, `mib`, `gib`, `tib`,
//!   `pib`, always powers of 1024.
//!
//! Every flag accepts the same spellings. Only the meaning of `k`/`kb`… differs, and only as
//! docker's own flags differ: memory sizes (`--memory`, docker's `RAMInBytes`) read them as
//! powers of 1024, storage sizes (`--keep-storage`, `FromHumanSize`) as powers of 1000. The
//! `…iB` spellings are unambiguous everywhere (go-units ignores the `i` and uses the flag's
//! base; reading `GiB` as 1000³ would surprise everyone, so rbuild does not).
//!
//! # Formatting ([`human`])
//!
//! docker's `units.HumanSize`: decimal units (`B`, `kB`, `MB`, …), three significant digits
//! printed as Go's `%.3g` does (`1.98MB`, `123kB`, `0B`, and `1e+03kB` for 999 999 bytes).
//!
//! Hand-written rather than the `bytesize` crate: bytesize prints `1.9 MiB` / `2.0 MB` (one
//! decimal, a space) and always reads `k` as 1000, where docker prints `%.3g` without a space
//! and reads `--memory 1k` as 1024. The parser crate keeps its own small binary-only reader
//! (`parser::mount`, `parser::shell::limits`) because it depends on no other rbuild crate.

use std::fmt;

/// What the bare `k`, `m`, `g`, `t`, `p` (and `kb`, `mb`, …) multiply by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// Powers of 1024: memory and limits (docker's `RAMInBytes`, `--memory`, `--shm-size`).
    Binary,
    /// Powers of 1000: storage (docker's `FromHumanSize`, `--keep-storage`).
    Decimal,
}

/// Why a size did not parse. The message names the offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// No number at the start (`m`, `ten`, ``).
    NotANumber(String),
    /// A unit other than the grammar's (`12x`, `5XB`).
    UnknownUnit { text: String, unit: String },
    /// More bytes than fit in 64 bits.
    TooLarge(String),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::NotANumber(t) => write!(f, "`{t}` is not a size"),
            SizeError::UnknownUnit { text, unit } => write!(
                f,
                "unknown unit `{unit}` in `{text}`: use b, k, m, g, t, p (optionally with b or iB)"
            ),
            SizeError::TooLarge(t) => write!(f, "`{t}` is too large"),
        }
    }
}

impl std::error::Error for SizeError {}

/// The help line for a size error: the spellings, and what they mean for `base`.
pub fn help(base: Base) -> &'static str {
    match base {
        Base::Binary => {
            "use a byte count with an optional unit, e.g. `512m`, `2g`, `1.5GiB` (k, m, g are \
             powers of 1024)"
        }
        Base::Decimal => {
            "use a byte count with an optional unit, e.g. `10GB`, `500MB`, `2GiB` (kB, MB, GB are \
             powers of 1000; KiB, MiB, GiB powers of 1024)"
        }
    }
}

/// Parse a size in the grammar of this module's doc.
pub fn parse(text: &str, base: Base) -> Result<u64, SizeError> {
    let t = text.trim();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, rest) = t.split_at(num_len);
    let unit = rest.strip_prefix(' ').unwrap_or(rest).to_ascii_lowercase();
    let not_a_number = || SizeError::NotANumber(text.to_string());
    if !num.bytes().any(|b| b.is_ascii_digit()) || num.matches('.').count() > 1 {
        return Err(not_a_number());
    }
    let unknown = || SizeError::UnknownUnit {
        text: text.to_string(),
        unit: rest.trim().to_string(),
    };
    let (prefix, binary) = match unit.as_str() {
        "" | "b" => ("", false),
        u => match u.strip_suffix("ib") {
            Some(p) if p.len() == 1 => (p, true),
            _ => (u.strip_suffix('b').unwrap_or(u), false),
        },
    };
    let power = match prefix {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(unknown()),
    };
    let step: u64 = if binary || base == Base::Binary {
        1024
    } else {
        1000
    };
    let mult = step.pow(power);
    let too_large = || SizeError::TooLarge(text.to_string());
    match num.split_once('.') {
        // Whole numbers exactly, without a detour through f64.
        None => num
            .parse::<u64>()
            .map_err(|_| too_large())?
            .checked_mul(mult)
            .ok_or_else(too_large),
        Some(_) => {
            let n: f64 = num.parse().map_err(|_| not_a_number())?;
            let bytes = n * mult as f64;
            if bytes >= u64::MAX as f64 {
                return Err(too_large());
            }
            Ok(bytes as u64)
        }
    }
}

/// docker's `units.HumanSize`: decimal units, three significant digits (`1.98MB`, `123kB`,
/// `0B`), including Go's `%g` switch to exponent form (`1e+03kB`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(size, 3), UNITS[i])
}

/// Go's `%.*g`: `prec` significant digits, exponent form when the exponent is < -4 or >= prec,
/// trailing zeros removed.
fn go_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = trim_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_base_reads_units_as_powers_of_1024() {
        let p = |s| parse(s, Base::Binary);
        assert_eq!(p("512m"), Ok(512 << 20));
        assert_eq!(p("2G"), Ok(2 << 30));
        assert_eq!(p("8mb"), Ok(8 << 20));
        assert_eq!(p("7340032"), Ok(7 << 20));
        assert_eq!(p("2k"), Ok(2048));
        assert_eq!(p("1T"), Ok(1 << 40));
        assert_eq!(p("512 k"), Ok(512 << 10));
        assert_eq!(p("4MiB"), Ok(4 << 20));
        assert_eq!(p("1.5g"), Ok(3 << 29));
        assert_eq!(p("10b"), Ok(10));
        assert_eq!(p(" 3 "), Ok(3));
    }

    #[test]
    fn decimal_base_reads_plain_units_as_powers_of_1000_and_ib_as_1024() {
        let p = |s| parse(s, Base::Decimal);
        assert_eq!(p("10GB"), Ok(10_000_000_000));
        assert_eq!(p("500mb"), Ok(500_000_000));
        assert_eq!(p("2GiB"), Ok(2 << 30));
        assert_eq!(p("1000"), Ok(1000));
        assert_eq!(p("1.5k"), Ok(1500));
        assert_eq!(p("1KiB"), Ok(1024));
        assert_eq!(p("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_say_why() {
        let p = |s| parse(s, Base::Decimal);
        assert_eq!(p("ten"), Err(SizeError::NotANumber("ten".into())));
        assert_eq!(p(""), Err(SizeError::NotANumber("".into())));
        assert_eq!(p("m"), Err(SizeError::NotANumber("m".into())));
        assert_eq!(p("1.2.3"), Err(SizeError::NotANumber("1.2.3".into())));
        assert!(matches!(p("5XB"), Err(SizeError::UnknownUnit { unit, .. }) if unit == "XB"));
        assert!(matches!(p("12x"), Err(SizeError::UnknownUnit { .. })));
        assert!(matches!(p("1kbb"), Err(SizeError::UnknownUnit { .. })));
        assert!(matches!(p("1  k"), Err(SizeError::UnknownUnit { .. })));
        assert!(matches!(p("-1"), Err(SizeError::NotANumber(_))));
        assert_eq!(
            parse("20000000P", Base::Binary),
            Err(SizeError::TooLarge("20000000P".into()))
        );
        assert_eq!(
            parse("99999999999999999999", Base::Binary),
            Err(SizeError::TooLarge("99999999999999999999".into()))
        );
        assert!(p("12x").unwrap_err().to_string().contains("unknown unit"));
        assert!(p("m").unwrap_err().to_string().contains("not a size"));
    }

    #[test]
    fn human_sizes_are_docker_style() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(999), "999B");
        assert_eq!(human(1_031_788), "1.03MB");
        assert_eq!(human(1_982_256), "1.98MB");
        assert_eq!(human(4_857_856), "4.86MB");
        assert_eq!(human(123_000), "123kB");
        assert_eq!(human(1_200_000_000), "1.2GB");
        assert_eq!(human(1_500_000_000), "1.5GB");
        assert_eq!(human(999_999), "1e+03kB");
    }
}
