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
            // The connection failed under the statement (diesel-async
            // reports a lost or reset socket as "unable to send command"):
            // the database is unavailable, whether or not the pool had
            // noticed the socket closing before handing the connection out.
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => StoreError::unavailable("the connection failed", e),
            other => StoreError::Query(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(kind: DatabaseErrorKind) -> DieselError {
        DieselError::DatabaseError(kind, Box::new("connection reset by peer".to_string()))
    }

    #[test]
    fn a_connection_failing_under_a_statement_is_unavailable_not_a_query_error() {
        for kind in [
            DatabaseErrorKind::ClosedConnection,
            DatabaseErrorKind::UnableToSendCommand,
        ] {
            assert!(matches!(
                StoreError::from(database(kind)),
                StoreError::Unavailable { .. }
            ));
        }
        assert!(matches!(
            StoreError::from(database(DatabaseErrorKind::CheckViolation)),
            StoreError::Query(_)
        ));
    }
}
