//! Heredoc markers: find `<<EOF`, `<<-EOF`, `<<"EOF"` and `3<<EOF` words in an instruction
//! line the way BuildKit does (lex the line keeping quotes and escapes, then match each word),
//! and decide whether the body expands variables (not when any part of the name is quoted).

use crate::shell::Lexer;

/// A heredoc marker found on an instruction line; the body is read afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub name: String,
    pub expand: bool,
    pub strip_tabs: bool,
    pub fd: Option<u32>,
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// Parse one word as a heredoc marker: `^(\d*)<<(-?)([^<]*)$` with a non-empty name that
/// lexes to exactly one word.
pub(crate) fn parse_marker(word: &str) -> Option<Marker> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let fd = if digits > 0 {
        word[..digits].parse().ok()
    } else {
        None
    };
    let mut lx = Lexer::new('\\');
    lx.skip_unset = true;
    let words = lx.expand(rest, &no_env).ok()?.words;
    if words.len() != 1 {
        return None;
    }
    lx.raw_quotes = true;
    let raw = lx.expand(rest, &no_env).ok()?.words;
    if raw.len() != 1 {
        return None;
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Some(Marker {
        name: words[0].clone(),
        expand: quotes(&words[0]) == quotes(&raw[0]),
        strip_tabs,
        fd,
    })
}

/// All heredoc markers on an instruction line, in order.
pub(crate) fn markers(line: &str) -> Vec<Marker> {
    if !line.contains("<<") {
        return Vec::new();
    }
    let mut lx = Lexer::new('\\');
    lx.raw_quotes = true;
    lx.raw_escapes = true;
    lx.skip_unset = true;
    let Ok(expanded) = lx.expand(line, &no_env) else {
        return Vec::new();
    };
    expanded
        .words
        .iter()
        .filter_map(|w| parse_marker(w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_quoting() {
        let m = markers("RUN <<EOF cat && 3<<-'END' x");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "EOF");
        assert!(m[0].expand && !m[0].strip_tabs);
        assert_eq!(m[1].name, "END");
        assert!(!m[1].expand && m[1].strip_tabs);
        assert_eq!(m[1].fd, Some(3));
        assert!(markers("RUN echo a<<b").is_empty());
        assert!(markers("RUN echo '<<EOF'").is_empty());
        assert_eq!(markers(r#"COPY <<"E"OF /x"#)[0].name, "EOF");
    }
}
