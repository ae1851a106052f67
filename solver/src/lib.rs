//! rbuild-solver plans a build: the stage/step DAG, the build context, content-hash cache keys,
//! the cache index and the explanations of cache misses. It never executes a step itself: it
//! calls a [`worker::Worker`] for every step that misses.
//!
//! Module map: `plan` (Dockerfile → expanded steps and configs) → `graph` (stage order, step DAG)
//! → `context` + `inputs` (what steps read, hashed once) → `cache_key` (keys only from its
//! explicit encoding) → `scheduler` (lookups in `cache`, misses to the worker, events to a
//! `reporter`) → `image` (final config). `explain` names why a key missed; `cache_export` moves
//! the index between machines; `gitref` reads git URLs (a git context, `ADD <git URL>`) with
//! BuildKit's rules.

pub mod cache;
pub mod cache_export;
pub mod cache_key;
pub mod chmod;
pub mod context;
pub mod explain;
pub mod gitref;
pub mod graph;
pub mod image;
pub mod inputs;
pub mod op;
pub mod plan;
pub mod reporter;
pub mod scheduler;
pub mod worker;
