//! Shell glob patterns (`*`, `?`, `\*`, `\?`) for `${V#pat}`, `${V%pat}` and `${V/pat/rep}`,
//! translated to regular expressions with the same leftmost-first semantics BuildKit uses.

use regex::Regex;

/// Translate a shell pattern to a regex; `greedy` picks `.*` over `.*?` for `*`.
fn to_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(tok) = chars.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // `\}` and `\/` escape the ${} syntax, not the pattern.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(c @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(c);
                    }
                    Some(c) => {
                        return Err(format!(
                            "invalid pattern ({pattern}) in substitution: invalid escape '\\{c}'"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "invalid pattern ({pattern}) in substitution: trailing escape"
                        ));
                    }
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(tok);
            }
            _ => out.push(tok),
        }
    }
    Regex::new(&out).map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))
}

/// `${V#pat}` (shortest) and `${V##pat}` (longest): remove a matching prefix.
pub(super) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let re = to_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Reverse a pattern but keep each `\x` escape pair in order.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<String> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            units.push([chars[i], chars[i + 1]].iter().collect());
            i += 2;
        } else {
            units.push(chars[i].to_string());
            i += 1;
        }
    }
    units.reverse();
    units.concat()
}

/// `${V%pat}` and `${V%%pat}`: remove a matching suffix, by matching a reversed pattern
/// against the reversed value.
pub(super) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let rev_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &rev_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Why a replacement failed.
#[derive(Debug)]
pub(super) enum ReplaceError {
    Pattern(String),
    /// The result would exceed the size bound.
    TooLarge,
}

/// `${V/pat/rep}` (first match) and `${V//pat/rep}` (all matches); the result may not exceed
/// `limit` bytes (checked as it grows: `${V//?/$REP}` multiplies sizes).
pub(super) fn replace(
    value: &str,
    pattern: &str,
    rep: &str,
    all: bool,
    limit: usize,
) -> Result<String, ReplaceError> {
    let re = to_regex(pattern, true, false).map_err(ReplaceError::Pattern)?;
    let out = if all {
        // Like BuildKit (Go's ReplaceAllString), `$1`/`${name}` in the replacement refer to
        // groups: the regex crate's replace_all semantics, built piecewise to stay bounded.
        let mut out = String::new();
        let mut last = 0;
        for caps in re.captures_iter(value) {
            let Some(m) = caps.get(0) else { continue };
            out.push_str(&value[last..m.start()]);
            caps.expand(rep, &mut out);
            last = m.end();
            if out.len() > limit {
                return Err(ReplaceError::TooLarge);
            }
        }
        out.push_str(&value[last..]);
        out
    } else {
        match re.find(value) {
            Some(m) => format!("{}{}{}", &value[..m.start()], rep, &value[m.end()..]),
            None => value.to_string(),
        }
    };
    if out.len() > limit {
        return Err(ReplaceError::TooLarge);
    }
    Ok(out)
}
