//! Exec-form detection: parse a JSON array of strings as Go's `encoding/json` would, so that
//! BuildKit's rule holds exactly: valid JSON of strings is exec form, valid JSON with other
//! values is an error, anything else silently falls back to shell form.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, satisfy};
use nom::combinator::{opt, recognize};
use nom::multi::separated_list0;
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};

/// Go's `encoding/json` nesting limit.
const MAX_DEPTH: usize = 10_000;

/// One array element: its decoded string (None when it is not a string) and byte range.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Element {
    pub value: Option<String>,
    pub start: usize,
    pub end: usize,
}

/// The outcome of trying to read `text` as a JSON array.
#[derive(Debug, PartialEq)]
pub(crate) enum JsonArray {
    /// Not JSON (or not an array): use shell form.
    NotJson,
    /// A valid array with a non-string element at this byte range.
    NotStrings(usize, usize),
    /// Exec form: decoded strings with their byte ranges in `text`.
    Strings(Vec<(String, usize, usize)>),
}

fn ws(i: &str) -> IResult<&str, &str> {
    take_while(|c| matches!(c, ' ' | '\t' | '\n' | '\r')).parse(i)
}

fn hex4(i: &str) -> IResult<&str, u32> {
    match i
        .get(..4)
        .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        Some(h) => Ok((&i[4..], u32::from_str_radix(h, 16).unwrap_or(0xFFFD))),
        None => fail(i),
    }
}

/// A JSON string literal, decoded with Go's replacement of invalid surrogates by U+FFFD.
fn string(i: &str) -> IResult<&str, String> {
    let (mut i, _) = char('"').parse(i)?;
    let mut out = String::new();
    loop {
        let (rest, chunk) = take_while(|c: char| c != '"' && c != '\\' && c >= ' ').parse(i)?;
        out.push_str(chunk);
        i = rest;
        let (rest, c) = satisfy(|_| true).parse(i)?;
        match c {
            '"' => return Ok((rest, out)),
            '\\' => {
                let (rest, e) = satisfy(|_| true).parse(rest)?;
                i = rest;
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let (rest, hi) = hex4(i)?;
                        i = rest;
                        if (0xD800..0xDC00).contains(&hi) {
                            // A high surrogate needs a following \uDC00-\uDFFF.
                            if let Ok((rest2, lo)) = preceded(tag("\\u"), hex4).parse(i)
                                && (0xDC00..0xE000).contains(&lo)
                            {
                                i = rest2;
                                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                                continue;
                            }
                            out.push('\u{FFFD}');
                        } else {
                            out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
                        }
                    }
                    _ => {
                        return Err(nom::Err::Error(nom::error::Error::new(
                            i,
                            nom::error::ErrorKind::Escaped,
                        )));
                    }
                }
            }
            _ => {
                // A raw control character.
                return Err(nom::Err::Error(nom::error::Error::new(
                    i,
                    nom::error::ErrorKind::Char,
                )));
            }
        }
    }
}

fn number(i: &str) -> IResult<&str, &str> {
    let digits = |i| take_while1(|c: char| c.is_ascii_digit()).parse(i);
    recognize((
        opt(char('-')),
        alt((tag("0"), digits)),
        opt((char('.'), digits)),
        opt((
            alt((char('e'), char('E'))),
            opt(alt((char('+'), char('-')))),
            digits,
        )),
    ))
    .parse(i)
}

/// Skip any JSON value that is not a string, iteratively (no recursion) so deep nesting
/// cannot overflow the stack.
fn other_value(mut i: &str) -> IResult<&str, ()> {
    #[derive(PartialEq)]
    enum Open {
        Array,
        Object,
    }
    let mut stack: Vec<Open> = Vec::new();
    loop {
        // Expect a value at `i`.
        let (rest, _) = ws(i)?;
        i = rest;
        if let Some(r) = i.strip_prefix('[') {
            stack.push(Open::Array);
            if stack.len() > MAX_DEPTH {
                return fail(i);
            }
            let (r, _) = ws(r)?;
            if let Some(r) = r.strip_prefix(']') {
                stack.pop();
                i = r;
            } else {
                i = r;
                continue;
            }
        } else if let Some(r) = i.strip_prefix('{') {
            stack.push(Open::Object);
            if stack.len() > MAX_DEPTH {
                return fail(i);
            }
            let (r, _) = ws(r)?;
            if let Some(r) = r.strip_prefix('}') {
                stack.pop();
                i = r;
            } else {
                let (r, _) = string(r)?;
                let (r, _) = (ws, char(':')).parse(r)?;
                i = r;
                continue;
            }
        } else if i.starts_with('"') {
            i = string(i)?.0;
        } else if let Some(r) = ["true", "false", "null"]
            .iter()
            .find_map(|k| i.strip_prefix(k))
        {
            i = r;
        } else {
            i = number(i)?.0;
        }
        // After a value: close containers or continue with the next member.
        loop {
            let Some(top) = stack.last() else {
                return Ok((i, ()));
            };
            let (r, _) = ws(i)?;
            i = r;
            if let Some(r) = i.strip_prefix(',') {
                if *top == Open::Object {
                    let (r, _) = ws(r)?;
                    let (r, _) = string(r)?;
                    let (r, _) = (ws, char(':')).parse(r)?;
                    i = r;
                } else {
                    i = r;
                }
                break;
            }
            let close = if *top == Open::Array { ']' } else { '}' };
            match i.strip_prefix(close) {
                Some(r) => {
                    stack.pop();
                    i = r;
                }
                None => return fail(i),
            }
        }
    }
}

fn fail<T>(i: &str) -> IResult<&str, T> {
    Err(nom::Err::Error(nom::error::Error::new(
        i,
        nom::error::ErrorKind::Verify,
    )))
}

/// One array element; offsets are computed from `total`, the length of the whole input.
fn element(i: &str, total: usize) -> IResult<&str, Element> {
    let (i, _) = ws(i)?;
    let start = total - i.len();
    let (rest, value) = if i.starts_with('"') {
        let (r, s) = string(i)?;
        (r, Some(s))
    } else {
        let (r, _) = other_value(i)?;
        (r, None)
    };
    let end = total - rest.len();
    let (rest, _) = ws(rest)?;
    Ok((rest, Element { value, start, end }))
}

/// Parse `text` (already left-trimmed) as a JSON array.
pub(crate) fn parse_array(text: &str) -> JsonArray {
    if !text.starts_with('[') {
        return JsonArray::NotJson;
    }
    let total = text.len();
    let element = move |i| element(i, total);
    let parsed = delimited(
        char('['),
        preceded(ws, separated_list0(char(','), element)),
        char(']'),
    )
    .parse(text);
    let (rest, elements) = match parsed {
        Ok(v) => v,
        Err(_) => return JsonArray::NotJson,
    };
    if !ws(rest).map(|(r, _)| r.is_empty()).unwrap_or(false) {
        return JsonArray::NotJson;
    }
    let mut out = Vec::with_capacity(elements.len());
    for e in elements {
        match e.value {
            Some(v) => out.push((v, e.start, e.end)),
            None => return JsonArray::NotStrings(e.start, e.end),
        }
    }
    JsonArray::Strings(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(t: &str) -> Vec<String> {
        match parse_array(t) {
            JsonArray::Strings(v) => v.into_iter().map(|(s, _, _)| s).collect(),
            other => panic!("{t}: {other:?}"),
        }
    }

    #[test]
    fn arrays_of_strings() {
        assert!(strings("[]").is_empty());
        assert!(strings("[ ]").is_empty());
        assert_eq!(strings(r#"[ "a", "b" ]"#), ["a", "b"]);
        assert_eq!(
            strings(r#"["\" \\ \/ \b \u0000 \u00e9 \ud83d\ude00"]"#),
            ["\" \\ / \u{8} \u{0} é 😀"]
        );
        assert_eq!(strings(r#"["\ud800"]"#), ["\u{FFFD}"]);
    }

    #[test]
    fn invalid_json_is_shell_form() {
        for t in [
            "[",
            r#"["a""#,
            r#"["a"] b"#,
            r#"["a",]"#,
            "['a']",
            r#"["a	b"]"#,
        ] {
            assert_eq!(parse_array(t), JsonArray::NotJson, "{t}");
        }
    }

    #[test]
    fn other_values_are_reported() {
        assert!(matches!(
            parse_array(r#"["a", 1]"#),
            JsonArray::NotStrings(6, 7)
        ));
        assert!(matches!(
            parse_array(r#"[{"k": [1, {}]}, "x"]"#),
            JsonArray::NotStrings(..)
        ));
        let deep = "[".repeat(20_000) + &"]".repeat(20_000);
        assert_eq!(parse_array(&deep), JsonArray::NotJson);
    }
}
