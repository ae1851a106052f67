//! The cli's integration tests, in one binary (one link of rbuild instead of one per file).
//! Each module was once a test binary of its own; [`support`] is their shared harness.
//!
//! Tests of different modules now run side by side in one process: a group that must not
//! overlap takes a lock from [`support`] (see there), and nothing here may change process-wide
//! state (environment, current directory, signal dispositions); commands get their own.

mod support;

mod build_cache;
mod build_cache_inline;
mod build_cache_local;
mod build_conformance;
mod build_copy;
mod build_errors;
mod build_flags;
mod build_gitctx;
mod build_multiplatform;
mod build_onbuild;
mod build_outputs;
mod build_progress_tty;
mod build_seed;
mod build_snapshot_identity;
mod build_snapshotter;
mod build_sshctx;
mod cli;
mod cli_everyday;
mod container_commit;
mod container_exec;
mod container_lifecycle;
mod container_mounts;
mod container_tty;
mod exec_conformance;
mod exec_diff;
mod exec_emulation;
mod exec_mounts;
mod exec_run;
mod exec_sandbox;
mod exec_security;
mod hardening;
mod hostile_catalogue;
mod parser_conformance;
mod parser_fixtures;
mod parser_lint;
mod registry_build;
mod registry_lazybase;
mod registry_login;
mod registry_multiplatform;
mod registry_pull_push;
mod rootless;
mod store_commands;
mod store_crash;
mod store_hostile;
mod store_interop;
mod store_multiplatform;
