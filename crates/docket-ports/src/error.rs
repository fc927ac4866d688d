//! The backend-neutral error of every store operation.

/// What a store operation can fail with. Adapters map their driver errors onto these; the
/// use cases map these onto HTTP statuses (404, 409, 412, 422, 503).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing does not exist, or belongs to another user (never revealed).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was violated (email taken, category name taken, …).
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version that is no longer current.
    #[error("version mismatch: the current version is {current}")]
    VersionMismatch { current: i64 },
    /// The input referenced something that does not exist (an unknown `category_id`).
    #[error("{field}: {message}")]
    InvalidReference { field: &'static str, message: String },
    /// The database cannot be reached or refused the operation for a reason of its own.
    #[error("{backend} unavailable: {source}")]
    Unavailable {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub fn unavailable(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Unavailable { backend, source: source.into() }
    }
}

impl From<docket_core::PlanError> for StoreError {
    fn from(e: docket_core::PlanError) -> StoreError {
        match e {
            docket_core::PlanError::VersionMismatch { current } => {
                StoreError::VersionMismatch { current }
            }
            docket_core::PlanError::InvalidReference { field, message } => {
                StoreError::InvalidReference { field, message }
            }
        }
    }
}
