//! rbuild-registry speaks the OCI distribution protocol: pull, push, authentication, mirrors
//! and the registry-backed build cache.
