//! rbuild-solver plans a build: the stage/step DAG, the build context, content-hash cache keys,
//! the cache index and the explanations of cache misses. It never executes a step itself.

pub mod context;
