//! The size check `rbuild check` runs: expand every ARG default and ENV value in file order,
//! with the values the Dockerfile itself gives (no build args, no base image), under the
//! expansion [`Limits`], so a file whose variables grow exponentially is reported at the line
//! that crosses a limit instead of passing as "no problems".

use std::collections::HashMap;

use super::{ExpandError, Limits, budget, expand_word};
use crate::ast::{Dockerfile, Instruction};
use crate::diagnostics::{self, ParseDiagnostic};
use crate::span::Word;

/// The first ARG or ENV value that expands past `limits`, as an error diagnostic.
pub fn check_sizes(df: &Dockerfile, limits: Limits) -> Option<ParseDiagnostic> {
    let _budget = budget(limits);
    let escape = df.directives.escape;
    let mut global: HashMap<String, String> = HashMap::new();
    let mut scope: Option<HashMap<String, String>> = None;
    let fail = |word: &Word, e: ExpandError| {
        e.is_too_large()
            .then(|| diagnostics::expansion_too_large(word.span, &e.message))
    };
    for ins in &df.instructions {
        match ins {
            Instruction::From(_) => scope = Some(HashMap::new()),
            Instruction::Arg(a) => {
                for def in &a.args {
                    let vars = scope.as_ref().unwrap_or(&global);
                    let value = match &def.default {
                        Some(d) => match expand_word(&d.value, vars, escape) {
                            Ok(v) => Some(v.value),
                            Err(e) => return fail(d, e),
                        },
                        // `ARG NAME` in a stage takes the global value, if any.
                        None => global.get(&def.name.value).cloned(),
                    };
                    let vars = scope.as_mut().unwrap_or(&mut global);
                    if let Some(v) = value {
                        vars.insert(def.name.value.clone(), v);
                    }
                }
            }
            Instruction::Env(e) => {
                let Some(vars) = scope.as_mut() else { continue };
                for kv in &e.vars {
                    match expand_word(&kv.value.value, &*vars, escape) {
                        Ok(v) => {
                            vars.insert(kv.key.value.clone(), v.value);
                        }
                        Err(err) => return fail(&kv.value, err),
                    }
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doubling(lines: usize) -> String {
        let mut df = String::from("ARG a0=xxxxxxxx\n");
        for i in 1..=lines {
            df.push_str(&format!("ARG a{i}=${{a{}}}${{a{}}}\n", i - 1, i - 1));
        }
        df.push_str("FROM scratch\nENV e=$a1$a1\n");
        df
    }

    /// The doubling file fails at the first line past the per-word bound, and a file that
    /// stays inside the bounds passes.
    #[test]
    fn exponential_args_fail_at_the_line_that_crosses() {
        let limits = Limits {
            per_word: 1024,
            per_build: 1 << 20,
        };
        let text = doubling(40);
        let parsed = crate::parse(&text);
        let d = check_sizes(&parsed.dockerfile, limits).expect("a size error");
        // 8 << 7 = 1024 fits; a8 (2048 bytes) is the first too large.
        let line = &text[..d.span.start].matches('\n').count() + 1;
        assert_eq!(line, 9, "{d:?}");
        assert!(d.message.contains("1 KiB"), "{}", d.message);
        assert!(check_sizes(&crate::parse(&doubling(7)).dockerfile, limits).is_none());
    }

    /// Many values inside the per-word bound still exhaust the total.
    #[test]
    fn the_total_is_bounded_too() {
        let mut text = String::from(&doubling(7));
        // A global ARG is visible in a stage once the stage declares it.
        text.push_str("ARG a7\n");
        for i in 0..2000 {
            text.push_str(&format!("ENV c{i}=$a7\n"));
        }
        let limits = Limits {
            per_word: 1024,
            per_build: 1 << 20,
        };
        let d = check_sizes(&crate::parse(&text).dockerfile, limits).expect("a size error");
        assert!(d.message.contains("in total"), "{}", d.message);
    }
}
