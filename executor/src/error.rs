//! The executor's error type: every way running a step, diffing it or writing its layer can fail,
//! each with a stable miette code under `rbuild::exec::` and a help line.

use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

/// Shorthand for results in this crate.
pub type Result<T, E = ExecError> = std::result::Result<T, E>;

/// Everything the executor can report. Message text is lowercase with backticked paths.
#[derive(Debug, Error, Diagnostic)]
pub enum ExecError {
    /// A filesystem operation on a path failed.
    #[error("{action} `{path}`: {source}")]
    #[diagnostic(
        code(rbuild::exec::io),
        help("check that the store directory is writable and the disk is not full")
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A step created a file whose name is reserved by the OCI layer format.
    #[error(
        "cannot represent path `/{path}` in an OCI layer: names starting with `.wh.` are reserved for whiteouts"
    )]
    #[diagnostic(
        code(rbuild::exec::reserved_name),
        help("rename the file in the RUN step; `.wh.` names cannot exist in an image filesystem")
    )]
    ReservedName { path: String },

    /// The sandbox could not be set up (mounts, namespaces, user lookup, ...).
    #[error("sandbox setup failed: {message}")]
    #[diagnostic(
        code(rbuild::exec::sandbox),
        help(
            "rbuild runs RUN steps in Linux namespaces over overlayfs; it needs root (or see the message)"
        )
    )]
    Sandbox { message: String },

    /// The step's command could not be started (not found, not executable, bad user, bad cwd).
    #[error("cannot start `{program}`: {reason}")]
    #[diagnostic(
        code(rbuild::exec::start),
        help("check the command, the PATH in the image's environment, USER and WORKDIR")
    )]
    Start { program: String, reason: String },

    /// The invalid user specification or a user/group missing from the image.
    #[error("{message}")]
    #[diagnostic(
        code(rbuild::exec::user),
        help(
            "use a numeric `uid[:gid]` or add the user to the image's `/etc/passwd` and `/etc/group`"
        )
    )]
    User { message: String },

    /// A RUN mount was invalid (bad target, missing secret, unusable source).
    #[error("invalid mount for target `{target}`: {message}")]
    #[diagnostic(
        code(rbuild::exec::mount),
        help("check the `--mount` options of the RUN instruction")
    )]
    Mount { target: String, message: String },

    /// A container's `-v`/`--mount` cannot be set up.
    #[error("invalid mount for target `{target}`: {message}")]
    #[diagnostic(
        code(rbuild::container::mount),
        help(
            "check the `-v` and `--mount` options of `rbuild run`: a bind source must exist on the host"
        )
    )]
    ContainerMount { target: String, message: String },

    /// rbuild is not running with the privileges the sandbox needs.
    #[error("running a sandbox needs root or rbuild's user namespace: {missing}")]
    #[diagnostic(
        code(rbuild::exec::privileges),
        help(
            "run rbuild as root, or rootless with newuidmap/newgidmap (package `uidmap`) and a range in /etc/subuid and /etc/subgid"
        )
    )]
    NotRoot { missing: String },

    /// No container has this name, id or id prefix.
    #[error("no such container: `{query}`")]
    #[diagnostic(
        code(rbuild::container::not_found),
        help("`rbuild ps -a` lists every container with its id and name")
    )]
    NoSuchContainer { query: String },

    /// `--name` is taken or not a valid name.
    #[error("{message}")]
    #[diagnostic(
        code(rbuild::container::name),
        help(
            "remove the container that has it (`rbuild rm NAME`) or pick another name; names use letters, digits, `_`, `.` and `-`"
        )
    )]
    ContainerName { message: String },

    /// An id prefix matches several containers.
    #[error("`{query}` matches {count} containers")]
    #[diagnostic(
        code(rbuild::container::ambiguous),
        help("give more characters of the id, or the container's name (`rbuild ps -a`)")
    )]
    AmbiguousContainer { query: String, count: usize },

    /// A container in the wrong state for the command (running for `rm`, stopped for `kill`).
    #[error("container `{name}` {message}")]
    #[diagnostic(code(rbuild::container::state), help("{help}"))]
    ContainerState {
        name: String,
        message: String,
        help: String,
    },

    /// The supervisor of a detached container could not set it up.
    #[error("cannot start the detached container: {message}")]
    #[diagnostic(
        code(rbuild::container::supervisor),
        help("the message says what failed; `rbuild ps -a` lists the containers that exist")
    )]
    Supervisor { message: String },

    /// The step was cancelled (Ctrl-C or a timeout).
    #[error("the step was cancelled: {reason}")]
    #[diagnostic(code(rbuild::interrupted), help("nothing from the step was kept"))]
    Cancelled { reason: String },

    /// The image store failed (unpacking a layer, writing a blob, ...).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] rbuild_store::Error),

    /// Writing the layer archive failed.
    #[error("cannot write the layer entry for `/{path}`: {message}")]
    #[diagnostic(
        code(rbuild::exec::layer),
        help(
            "the step's files changed while the layer was written, or the entry cannot be encoded"
        )
    )]
    Layer { path: String, message: String },
}

impl ExecError {
    /// A cancelled step is [`ErrorClass::Interrupted`](rbuild_store::ErrorClass); a store
    /// error keeps its class; every other failure of a step is the build's input's.
    pub fn class(&self) -> rbuild_store::ErrorClass {
        match self {
            ExecError::Cancelled { .. } => rbuild_store::ErrorClass::Interrupted,
            ExecError::Store(e) => e.class(),
            _ => rbuild_store::ErrorClass::Input,
        }
    }

    /// An I/O error on `path` while doing `action` (e.g. "cannot read").
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ExecError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A sandbox setup failure with a message.
    pub fn sandbox(message: impl Into<String>) -> Self {
        ExecError::Sandbox {
            message: message.into(),
        }
    }
}

/// Attach a path and an action to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| ExecError::io(action, path, e))
    }
}
