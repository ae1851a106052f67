//! `--chmod` modes: octal (`0755`) or symbolic (`u=rwX,go=rX`, `+x`, `a-w`), parsed once by the
//! planner and applied per file by the executor (and by cache keys, which follow the effective
//! mode rather than the context's).

use std::fmt;

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One comma-separated clause: who, then a list of operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bit mask of the affected classes (u=0o4700, g=0o2070, o=0o1007); all when none given.
    who: u32,
    ops: Vec<(char, Perm)>,
}

/// The permission letters of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    Bits {
        r: bool,
        w: bool,
        x: bool,
        big_x: bool,
        s: bool,
        t: bool,
    },
    /// Copy from another class (`g=u`).
    Copy(char),
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl Chmod {
    pub fn parse(text: &str) -> Result<Chmod, String> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(text, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(Chmod::Octal(mode)),
                _ => Err(format!("`{text}` is not an octal mode between 0 and 7777")),
            };
        }
        let mut clauses = Vec::new();
        for part in text.split(',') {
            clauses.push(parse_clause(part).ok_or_else(|| {
                if part == text {
                    format!("`{text}` is neither an octal nor a symbolic mode")
                } else {
                    format!("`{text}` is not a mode: cannot parse `{part}`")
                }
            })?);
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The permission bits (07777) a file of `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for clause in clauses {
                    for (op, perm) in &clause.ops {
                        let bits = perm_bits(perm, clause.who, mode, is_dir);
                        mode = match op {
                            '+' => mode | bits,
                            '-' => mode & !bits,
                            _ => (mode & !clause.who) | bits,
                        };
                    }
                }
                mode
            }
        }
    }
}

fn parse_clause(part: &str) -> Option<Clause> {
    let mut chars = part.chars().peekable();
    let mut who = 0;
    while let Some(&c) = chars.peek() {
        who |= match c {
            'u' => USER,
            'g' => GROUP,
            'o' => OTHER,
            'a' => USER | GROUP | OTHER,
            _ => break,
        };
        chars.next();
    }
    if who == 0 {
        who = USER | GROUP | OTHER;
    }
    let mut ops = Vec::new();
    while let Some(op) = chars.next() {
        if !matches!(op, '+' | '-' | '=') {
            return None;
        }
        let mut letters = String::new();
        while let Some(&c) = chars.peek() {
            if matches!(c, '+' | '-' | '=') {
                break;
            }
            letters.push(c);
            chars.next();
        }
        let perm = if matches!(letters.as_str(), "u" | "g" | "o") {
            Perm::Copy(letters.chars().next()?)
        } else {
            let mut bits = (false, false, false, false, false, false);
            for c in letters.chars() {
                match c {
                    'r' => bits.0 = true,
                    'w' => bits.1 = true,
                    'x' => bits.2 = true,
                    'X' => bits.3 = true,
                    's' => bits.4 = true,
                    't' => bits.5 = true,
                    _ => return None,
                }
            }
            Perm::Bits {
                r: bits.0,
                w: bits.1,
                x: bits.2,
                big_x: bits.3,
                s: bits.4,
                t: bits.5,
            }
        };
        ops.push((op, perm));
    }
    if ops.is_empty() {
        return None;
    }
    Some(Clause { who, ops })
}

fn perm_bits(perm: &Perm, who: u32, mode: u32, is_dir: bool) -> u32 {
    match perm {
        Perm::Bits {
            r,
            w,
            x,
            big_x,
            s,
            t,
        } => {
            let mut bits = 0;
            if *r {
                bits |= 0o444;
            }
            if *w {
                bits |= 0o222;
            }
            // `X`: execute only for directories or files already executable by someone.
            if *x || (*big_x && (is_dir || mode & 0o111 != 0)) {
                bits |= 0o111;
            }
            if *s {
                bits |= 0o6000;
            }
            if *t {
                bits |= 0o1000;
            }
            bits & who
        }
        Perm::Copy(from) => {
            let src = match from {
                'u' => (mode >> 6) & 0o7,
                'g' => (mode >> 3) & 0o7,
                _ => mode & 0o7,
            };
            (src << 6 | src << 3 | src) & who & 0o777
        }
    }
}

impl fmt::Display for Chmod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chmod::Octal(m) => write!(f, "{m:04o}"),
            Chmod::Symbolic(_) => write!(f, "symbolic"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(text: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(text).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal() {
        assert_eq!(Chmod::parse("0640").unwrap(), Chmod::Octal(0o640));
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert!(Chmod::parse("99999").is_err());
        assert!(Chmod::parse("10000").is_err());
    }

    #[test]
    fn symbolic() {
        assert_eq!(sym("u=rwX,go=rX", 0o600, false), 0o644);
        assert_eq!(sym("u=rwX,go=rX", 0o700, false), 0o755);
        assert_eq!(sym("u=rwX,go=rX", 0o600, true), 0o755);
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("a-w", 0o666, false), 0o444);
        assert_eq!(sym("go=u", 0o750, false), 0o777);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert!(Chmod::parse("u=rwz").is_err());
        assert!(Chmod::parse("q+x").is_err());
        assert!(Chmod::parse("").is_err());
    }
}
