//! rbuild-engine is the build pipeline as a library: from a Dockerfile and a context directory
//! to an image in the store, with its outputs, tags, pushes and registry build cache. It wires
//! the other crates together (parser → solver → executor as the worker → store/registry) and
//! prints nothing: progress and warnings go to a [`Reporter`] the caller implements, failures
//! are `miette::Report`s whose error types say their class (`rbuild_store::ErrorClass`).
//!
//! # Public API
//!
//! - [`BuildOptions`] (plain data: tags, outputs, secrets, network, entitlements, limits,
//!   push, cache export, reproducibility check) around [`PrepareOptions`] (store root,
//!   context, Dockerfile, build args, target, platform, pull policy, cache import, no-cache,
//!   `SOURCE_DATE_EPOCH`). `BuildOptions::new(root, context)` gives `rbuild build`'s defaults.
//!   The context is a [`ContextSource`]: a directory, `-` (stdin: a tar of the context, or a
//!   Dockerfile and no context) or a git URL ([`ContextSource::from_arg`] reads docker's
//!   argument).
//! - [`build`]`(&BuildOptions, &dyn Reporter, &CancelToken) -> `[`BuildResult`]: prepare,
//!   check entitlements, solve with the executor, commit, (verify,) write outputs, tag, write
//!   the id/metadata files, push and export the cache. [`BuildResult`] holds the target (an
//!   image, or for several platforms the index over them), each platform's `ImageRecord`, the
//!   names tagged, the outputs written, a per-step cache report and timings. Several
//!   `platforms` build concurrently, one plan each (see `session.md`).
//!   Cancelling the token stops the build (an `Interrupted` failure; nothing is tagged).
//! - [`Session::prepare`]`(&PrepareOptions, &dyn Reporter)`: everything known before anything
//!   runs (the parsed Dockerfile, one [`PlatformBuild`] per target platform with its plan and
//!   hashed inputs, resolved bases, the cache index).
//!   [`Session::explain`] is `rbuild explain` (a dry run: [`StepExplanation`]s),
//!   [`Session::plan`] is `rbuild plan` (the step graph).
//! - [`Reporter`]: the solver's step events (`rbuild_solver::reporter::Reporter`) plus
//!   [`Notice`]s (lint diagnostics, warnings, lines, explanations, passes) and registry
//!   transfer progress; [`Silent`] reports nothing.
//! - Building blocks the cli shares: [`output`] (`-o` parsing, the atomic file writer every
//!   command uses, one module per exporter), [`registry::spec`] (`--cache-from/--cache-to`),
//!   [`entitlements::Allowed`] (`--allow`), [`ssh::parse`] (`--ssh`), [`dockerfile`] (reading
//!   with the size cap, expansion limits), [`cache_dir`].
//!
//! Module map: `options` → `prepare` (`main_context`, `dockerfile`, `images` with
//! `named_context` (`--build-context`), `registry::pull`, `registry::cache` import) →
//! `session` (`entitlements`, `ssh`, `explain`, solve with `registry::layers`, `finish` (with
//! `registry::inline`), `reproducible`, `output`, `registry::push`/`cache` export).
//!
//! [`StepExplanation`]: rbuild_solver::explain::StepExplanation

// Reports are the (rare) error path; boxing them would not make the happy path faster.
#![allow(clippy::result_large_err)]

pub mod dockerfile;
pub mod emulation;
pub mod entitlements;
pub mod explain;
pub mod finish;
pub mod images;
mod main_context;
pub mod named_context;
pub mod options;
pub mod output;
mod prepare;
pub mod registry;
pub mod report;
pub mod reproducible;
mod session;
pub mod ssh;

pub use options::{
    Annotations, BuildOptions, ContextSource, DockerfileSource, PrepareOptions, PullPolicy,
};
pub use prepare::{PlatformBuild, Session, cache_dir};
pub use report::{Notice, Reporter, Silent, Transfer};
pub use session::{BuildResult, StepOutcome, StepReport, Timings, build};
