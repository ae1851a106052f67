//! Test support for the registry crate: a real `docker-registry` started on a free port, a
//! scriptable misbehaving HTTP server, and a small directory-backed store implementing the
//! store traits.
#![allow(dead_code)]

pub mod fake_http;
pub mod real_registry;
pub mod test_store;
