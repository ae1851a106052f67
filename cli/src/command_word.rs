//! The first word after the global options: a command, or the bare build form's context?
//!
//! `rbuild -t x .` means `rbuild build -t x .`, so a word that is not a command could be a
//! build context. Read that way, a typo (`rbuild imgaes`) or a docker command rbuild lacks
//! (`rbuild ps`) used to become "the build context `ps` is not a directory". The rules, in
//! order (the same list is in `rbuild --help`):
//!
//! 1. A command's name or alias (or `help`) is that command, even when a directory of that
//!    name is here: `rbuild version` runs `version`. Build such a directory with
//!    `rbuild build version` or `rbuild ./version`.
//! 2. An option (`-t x .`), a word that looks like a path (has a `/`, starts with `.` or `~`)
//!    or a git URL (`git@host:repo.git`, BuildKit's rules: `rbuild_solver::gitref`) is the
//!    bare build form.
//! 3. A word close to a command's name (one typo away: see [`suggest`]), or the
//!    name of a docker command rbuild does not have (`ps`, `logs`, ...): when no such path
//!    exists it is a usage error (exit 2) with "a similar subcommand exists"; when a directory
//!    of that name exists it is built, with a warning that names the command and the
//!    spellings that say "build this directory" without one. A directory the user can see is
//!    a stronger sign than the similarity of two words, so it is not refused; the warning
//!    makes a typo visible before anything runs.
//! 4. Any other word is a context when it exists on disk, else an unknown command (exit 2).
//!
//! Why by hand: clap's own suggestion only runs when the word reaches clap as a subcommand,
//! and the bare form must decide before clap parses. The error is built as clap's own
//! `InvalidSubcommand` so it reads and exits like every other usage error.

use std::path::Path;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Docker commands rbuild has no command for. A real command of the same name, when one is
/// added, is matched first (rule 1), so this list only has to stay a superset.
const DOCKER_ONLY: &[&str] = &[
    "attach",
    "builder",
    "buildx",
    "commit",
    "compose",
    "container",
    "cp",
    "create",
    "diff",
    "events",
    "exec",
    "export",
    "kill",
    "logs",
    "network",
    "pause",
    "port",
    "ps",
    "rename",
    "restart",
    "rm",
    "start",
    "stats",
    "stop",
    "top",
    "unpause",
    "update",
    "volume",
    "wait",
];

/// How the first word is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// A command, help or version: the line goes to clap as it is.
    Command,
    /// The bare build form: `build` goes before this word. A warning, when the word also looks
    /// like a command.
    Context { warning: Option<String> },
    /// Not a command and not a context: a usage error.
    Unknown {
        /// Command names close to the word, best first.
        suggestions: Vec<String>,
        /// The word is a docker command rbuild does not have.
        docker: bool,
    },
}

/// Read `word`, the first word after the global options. `commands` are the names and aliases
/// of rbuild's commands; `exists` says whether a path exists (a parameter for the tests).
pub fn read(word: &str, commands: &[String], exists: impl Fn(&Path) -> bool) -> Reading {
    if matches!(word, "-h" | "--help" | "-V" | "--version" | "help")
        || commands.iter().any(|c| c == word)
    {
        return Reading::Command;
    }
    if word.starts_with(['-', '.', '~'])
        || word.contains('/')
        || word.is_empty()
        || rbuild_solver::gitref::parse(word).is_ok_and(|g| g.is_some())
    {
        return Reading::Context { warning: None };
    }
    let docker = DOCKER_ONLY.contains(&word);
    // A docker command is not a typo: `ps` is not a misspelt `push`.
    let suggestions = if docker {
        Vec::new()
    } else {
        suggest(word, commands)
    };
    let on_disk = exists(Path::new(word));
    if !suggestions.is_empty() || docker {
        if on_disk {
            let meant = match suggestions.first() {
                Some(s) => format!("did you mean `rbuild {s}`? "),
                None => format!("`{word}` is a docker command that rbuild does not have; "),
            };
            return Reading::Context {
                warning: Some(format!(
                    "building the directory `{word}` ({meant}write `rbuild build {word}` or \
                     `rbuild ./{word}` to build it without this warning)"
                )),
            };
        }
        return Reading::Unknown {
            suggestions,
            docker,
        };
    }
    if on_disk {
        Reading::Context { warning: None }
    } else {
        Reading::Unknown {
            suggestions,
            docker,
        }
    }
}

/// Command names `word` is a typo of, best first: one edit away (a letter added, dropped,
/// changed, or two swapped; two edits for words of seven letters or more) *and* a Jaro
/// similarity above 0.7, clap's own test for "a similar subcommand exists". Jaro alone takes
/// common directory names for typos (`base`~`parse`, `infra`~`info`, `site`~`store`), the
/// edit distance alone takes `base` for `save`; both together keep `imgaes`, `bulid`,
/// `verison`, `pul` and leave those alone. `help` is not offered.
pub fn suggest(word: &str, commands: &[String]) -> Vec<String> {
    let max_edits = if word.chars().count() < 7 { 1 } else { 2 };
    let mut scored: Vec<(f64, &String)> = commands
        .iter()
        .filter(|c| c.as_str() != "help")
        .filter(|c| strsim::osa_distance(word, c) <= max_edits)
        .map(|c| (strsim::jaro(word, c), c))
        .filter(|(score, _)| *score > 0.7)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().map(|(_, c)| c.clone()).collect()
}

/// The usage error for an [`Reading::Unknown`] word, shaped and coloured as clap's own.
pub fn unknown_error(
    cmd: &mut clap::Command,
    word: &str,
    suggestions: Vec<String>,
    docker: bool,
) -> clap::Error {
    let mut err = clap::Error::new(ErrorKind::InvalidSubcommand).with_cmd(cmd);
    err.insert(
        ContextKind::InvalidSubcommand,
        ContextValue::String(word.to_string()),
    );
    if !suggestions.is_empty() {
        err.insert(
            ContextKind::SuggestedSubcommand,
            ContextValue::Strings(suggestions),
        );
    }
    let mut tips = Vec::new();
    if docker {
        tips.push(format!(
            "'{word}' is a docker command that rbuild does not have; 'rbuild --help' lists \
             rbuild's commands"
        ));
    }
    tips.push(format!(
        "to build a directory named '{word}', write 'rbuild build {word}' or 'rbuild ./{word}'"
    ));
    err.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(tips.into_iter().map(Into::into).collect()),
    );
    err.insert(
        ContextKind::Usage,
        ContextValue::StyledStr(cmd.render_usage()),
    );
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> Vec<String> {
        [
            "build", "parse", "check", "login", "logout", "pull", "push", "explain", "plan",
            "images", "image", "history", "inspect", "tag", "rmi", "run", "prune", "save", "load",
            "import", "system", "store", "version", "info",
        ]
        .map(String::from)
        .to_vec()
    }

    fn read_with(word: &str, dirs: &[&str]) -> Reading {
        read(word, &commands(), |p| {
            dirs.iter().any(|d| Path::new(d) == p)
        })
    }

    #[test]
    fn commands_win_over_directories() {
        assert_eq!(read_with("version", &["version"]), Reading::Command);
        assert_eq!(read_with("images", &[]), Reading::Command);
        assert_eq!(read_with("help", &[]), Reading::Command);
        assert_eq!(read_with("--help", &[]), Reading::Command);
    }

    #[test]
    fn options_and_paths_are_the_bare_build_form() {
        for word in [
            "-t",
            "--file",
            ".",
            "./imgaes",
            "ctx/app",
            "~/x",
            "..",
            "-",
            "git@host:org/repo.git#main",
        ] {
            assert_eq!(
                read_with(word, &[]),
                Reading::Context { warning: None },
                "{word}"
            );
        }
        // An existing directory whose name is not like any command.
        assert_eq!(
            read_with("backend", &["backend"]),
            Reading::Context { warning: None }
        );
    }

    #[test]
    fn one_typo_away_is_close() {
        for (typo, meant) in [
            ("bulid", "build"),
            ("buidl", "build"),
            ("pul", "pull"),
            ("psuh", "push"),
            ("systme", "system"),
            ("laod", "load"),
            ("expalin", "explain"),
            ("infoo", "info"),
        ] {
            assert_eq!(
                suggest(typo, &commands()).first().map(String::as_str),
                Some(meant)
            );
        }
    }

    #[test]
    fn typos_are_usage_errors_with_a_suggestion() {
        assert_eq!(
            read_with("imgaes", &[]),
            Reading::Unknown {
                suggestions: vec!["images".into()],
                docker: false
            }
        );
        let Reading::Unknown { suggestions, .. } = read_with("verison", &[]) else {
            panic!()
        };
        assert_eq!(suggestions[0], "version");
        let Reading::Unknown { suggestions, .. } = read_with("isnpect", &[]) else {
            panic!()
        };
        assert_eq!(suggestions[0], "inspect");
    }

    #[test]
    fn docker_commands_rbuild_lacks_are_named() {
        assert_eq!(
            read_with("ps", &[]),
            Reading::Unknown {
                suggestions: vec![],
                docker: true
            }
        );
        // Once rbuild has the command, the command wins.
        let mut with_ps = commands();
        with_ps.push("ps".into());
        assert_eq!(read("ps", &with_ps, |_| false), Reading::Command);
    }

    #[test]
    fn a_directory_named_like_a_command_is_built_with_a_warning() {
        let Reading::Context {
            warning: Some(warning),
        } = read_with("imgaes", &["imgaes"])
        else {
            panic!()
        };
        assert!(
            warning.contains("did you mean `rbuild images`"),
            "{warning}"
        );
        assert!(warning.contains("`rbuild ./imgaes`"), "{warning}");
    }

    #[test]
    fn unknown_plain_words_are_errors_without_suggestion() {
        assert_eq!(
            read_with("frobnicate", &[]),
            Reading::Unknown {
                suggestions: vec![],
                docker: false
            }
        );
    }

    /// Common context directory names are not taken for typos (no warning when they exist).
    #[test]
    fn common_directory_names_are_not_close_to_commands() {
        for word in [
            "app", "api", "web", "src", "docker", "backend", "frontend", "hello", "test", "base",
            "site", "server", "worker", "context", "examples", "services", "rust", "ui", "client",
            "infra", "node", "data", "demo", "lib", "docs",
        ] {
            assert!(
                suggest(word, &commands()).is_empty(),
                "{word}: {:?}",
                suggest(word, &commands())
            );
        }
    }
}
