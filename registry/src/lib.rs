//! rbuild-registry speaks the OCI distribution protocol: pull, push, authentication, mirrors
//! and the registry-backed build cache.

pub mod auth;
pub mod client;
pub mod config;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod platform;

pub use auth::credentials::{
    Credential, CredentialProvider, DockerConfigCredentials, StaticCredentials,
};
pub use client::repo::{BlobPush, Repo};
pub use client::transport::Client;
pub use config::{Endpoint, RegistriesConfig};
pub use error::{RegistryError, Result};
pub use platform::PlatformSpec;
