//! Parsing `WWW-Authenticate` challenges (RFC 7235): the scheme and its auth-params, as
//! registries send them (`Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`).
//! Hand-written: the grammar needed is tiny and http-auth would add a dependency for 60 lines.

use std::collections::BTreeMap;

/// One challenge: scheme (lowercased) and its parameters (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parse every challenge in a header value. Malformed trailing input is ignored rather than
/// failing the whole header; a challenge with an unparsable parameter list keeps what parsed.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let token_end = rest.find([' ', ',', '=']).unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = &rest[token_end..];
        if token.is_empty() {
            break;
        }
        if let Some(raw) = after.strip_prefix('=') {
            // An auth-param belonging to the current challenge.
            let (value, remaining) = parse_value(raw);
            if let Some(current) = out.last_mut() {
                current.params.insert(token.to_ascii_lowercase(), value);
            }
            rest = remaining;
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            rest = after;
        }
    }
    out
}

/// A quoted-string (with backslash escapes) or a token; returns the value and the rest.
fn parse_value(input: &str) -> (String, &str) {
    let input = input.trim_start();
    if let Some(quoted) = input.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return (value, &quoted[i + 1..]),
                other => value.push(other),
            }
        }
        (value, "")
    } else {
        let end = input.find([',', ' ']).unwrap_or(input.len());
        (input[..end].to_string(), &input[end..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/alpine:pull,push")
        );
    }

    #[test]
    fn basic_and_multiple_challenges_and_escapes() {
        let c = parse_challenges(r#"Basic realm="Registry \"x\"", Bearer realm=tok,service=s"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry \"x\""));
        assert_eq!(c[1].param("realm"), Some("tok"));
        assert_eq!(c[1].param("service"), Some("s"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for h in [
            "",
            "=",
            "Bearer realm=\"unterminated",
            ",,,",
            "Bearer =x",
            "\"\"",
        ] {
            let _ = parse_challenges(h);
        }
    }
}
