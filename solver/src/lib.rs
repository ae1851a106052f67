//! rbuild-solver plans a build: the stage/step DAG, the build context, content-hash cache keys,
//! the cache index and the explanations of cache misses. It never executes a step itself: it
//! calls a [`worker::Worker`] for every step that misses.

pub mod cache;
pub mod cache_export;
pub mod cache_key;
pub mod chmod;
pub mod context;
pub mod explain;
pub mod graph;
pub mod image;
pub mod inputs;
pub mod op;
pub mod plan;
pub mod reporter;
pub mod scheduler;
pub mod worker;
