//! What kind of failure an error is, whichever crate raised it, and a typed diagnostic for
//! failures that have no error type of their own. The cli turns the class into the exit code
//! (`cli/src/exit.rs`); nothing decides it from a diagnostic's code string.
//!
//! Every error type that can be something other than bad input answers `class()`: the store's
//! (its own faults vs bad input), the registry's, the executor's (a cancelled step is
//! [`ErrorClass::Interrupted`]), the executor's export and step failures, and the solver's cache
//! index and cache import. The remaining diagnostic types (the parser's, the planner's, the
//! build context's, the cli's usage errors) are bad input by definition: the cli classes any
//! report it does not recognise as [`ErrorClass::Input`]. A [`Failure`] is the typed replacement
//! for an ad-hoc `miette!(code = …)` report: message, help, code for the reader, class for the
//! machine.

use std::fmt::Display;

use miette::Diagnostic;

/// The kinds of failure a command reports, each with its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The Dockerfile, a flag, an image or an archive given to rbuild is wrong, or a step
    /// failed (exit 1).
    Input,
    /// A registry refused, failed or could not be reached (exit 3).
    Registry,
    /// The local store failed: I/O, corruption, a newer format, a refused root (exit 4).
    Store,
    /// `--fail-on-cache-miss` found a step that would run (exit 5).
    CacheMiss,
    /// The command was interrupted (Ctrl-C, SIGTERM) and stopped cleanly (exit 130).
    Interrupted,
}

/// A failure with no error type of its own: what happened, how to fix it, its diagnostic code
/// (for the reader and for tests) and its class (for the exit code).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub class: ErrorClass,
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
}

impl Failure {
    pub fn new(class: ErrorClass, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            class,
            code,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Failure {
        self.help = Some(help.into());
        self
    }

    /// The build or command was interrupted before it finished.
    pub fn interrupted(message: impl Into<String>) -> Failure {
        Failure::new(ErrorClass::Interrupted, "rbuild::interrupted", message)
    }

    /// A store I/O failure described by a message (the typed [`crate::Error::Io`] is better
    /// where the action and path are known).
    pub fn store_io(message: impl Into<String>) -> Failure {
        Failure::new(ErrorClass::Store, "rbuild::store::io", message)
    }

    pub fn class(&self) -> ErrorClass {
        self.class
    }
}

impl Diagnostic for Failure {
    fn code<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn Display>)
    }
}
