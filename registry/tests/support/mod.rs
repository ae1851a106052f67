//! Test support for the registry crate: a real `docker-registry` started on a free port, a
//! scriptable misbehaving HTTP server, and a small directory-backed store implementing the
//! store traits.
#![allow(dead_code)]

pub mod fake_http;
pub mod real_registry;
pub mod test_store;
pub mod tree;

/// The `sha256:<hex>` text of `bytes` (the store's hasher), as the tests compare it.
pub fn sha256_digest(bytes: &[u8]) -> String {
    rbuild_store::Digest::of(bytes).to_string()
}
