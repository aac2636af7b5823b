//! The one place where database errors become typed store errors.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What caused a store error, kept for the log's error chain.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed database operation. Each variant keeps its cause as
/// `source()`, so the full chain reaches the log (`error_chain`) while
/// callers match on the kind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique or foreign-key constraint refused the write.
    #[error("conflict")]
    Conflict(#[source] DieselError),
    /// The database could not be reached or gave no connection in time.
    #[error("database unavailable: {what}")]
    Unavailable {
        what: String,
        #[source]
        source: Option<Source>,
    },
    #[error("migration failed: {what}")]
    Migration {
        what: String,
        #[source]
        source: Option<Source>,
    },
    #[error("database query failed")]
    Query(#[source] DieselError),
}

impl StoreError {
    /// The database is unreachable: `what` was being done, `source` says why.
    pub fn unavailable(what: impl Into<String>, source: impl Into<Source>) -> Self {
        StoreError::Unavailable {
            what: what.into(),
            source: Some(source.into()),
        }
    }
}

/// `error` and each of its causes, outermost first, joined by ": " -- the
/// form a 5xx or a failed background pass is logged in.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    shared_domain::error::Chain(error).to_string()
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => StoreError::NotFound,
            DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::ForeignKeyViolation,
                _,
            ) => StoreError::Conflict(e),
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                StoreError::unavailable("the connection closed", e)
            }
            other => StoreError::Query(other),
        }
    }
}
