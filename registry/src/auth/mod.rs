//! Authentication: `WWW-Authenticate` challenges and the credentials answering them.

pub mod challenge;
pub mod credentials;
