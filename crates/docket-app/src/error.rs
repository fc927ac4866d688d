//! `AppError`: what a use case can fail with, independent of any transport.
//!
//! The HTTP edge maps each variant to one status and an RFC 9457 problem; the MCP edge maps
//! them to tool errors. Store errors are mapped here, in one place ([`From<StoreError>`]).
//! Messages are safe to show to the client, except `Unavailable` and `Internal`, whose text is
//! for the logs only.

use docket_core::{FieldError, ValidationErrors};
use docket_ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input is well-formed but breaks a rule (422).
    #[error("invalid input: {0}")]
    Validation(ValidationErrors),
    /// No credentials, or credentials that do not check out (401). The text says why, in
    /// terms that reveal nothing (never which half of a login was wrong).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The caller is known but may not do this (403).
    #[error("forbidden")]
    Forbidden,
    /// The thing does not exist or is not the caller's (404); names what was looked for.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was broken (409).
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version that is no longer current (412).
    #[error("version mismatch: the current version is {current_version}")]
    PreconditionFailed { current_version: i64 },
    /// Too many attempts (429); retry after this many seconds.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A dependency (the database, an identity provider) is down (503). The text is for logs.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure (500). The error is for logs, never for the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A 422 for one field.
    pub fn invalid(field: &str, code: &str, message: impl Into<String>) -> AppError {
        AppError::Validation(ValidationErrors::single(FieldError::custom(field, code, message)))
    }

    pub fn unauthorized(why: impl Into<String>) -> AppError {
        AppError::Unauthorized(why.into())
    }
}

impl From<ValidationErrors> for AppError {
    fn from(e: ValidationErrors) -> Self {
        AppError::Validation(e)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::NotFound(what),
            StoreError::Conflict(msg) => AppError::Conflict(msg),
            StoreError::VersionMismatch { current } => {
                AppError::PreconditionFailed { current_version: current }
            }
            StoreError::InvalidReference { field, message } => {
                AppError::invalid(field, "unknown_reference", message)
            }
            StoreError::Unavailable { backend, source } => {
                AppError::Unavailable(format!("{backend} unavailable: {source}"))
            }
        }
    }
}
