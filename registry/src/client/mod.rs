//! The distribution-API client: the HTTP transport with authentication and retries, and the
//! per-repository manifest and blob operations built on it.

pub mod repo;
pub mod transport;
