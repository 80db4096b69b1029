//! Authentication for wisp: AWS Signature Version 4, signed and verified the way AWS
//! and botocore do it, and the access keys a server accepts.
//!
//! `sigv4` is pure (no I/O, no clock: callers pass the time); `keys` keeps the key file.

pub mod keys;
pub mod sigv4;

pub use keys::{AccessKey, KeyFile};
pub use sigv4::{sign, verify, AuthError, SignedRequest};
