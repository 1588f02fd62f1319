/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or failed; the operation may succeed if tried again.
    #[error("store backend: {0}")]
    Backend(String),
    /// A stored row could not be read back into a domain value: the data is damaged.
    #[error("stored data is corrupt ({what}): {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// The store location given in configuration is not one this build understands.
    #[error("invalid store location `{location}`: {reason}")]
    InvalidLocation { location: String, reason: String },
    /// The operation names a row that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A page cursor that no list of this kind hands out.
    #[error("`{0}` is not a cursor of this list")]
    InvalidCursor(String),
}

impl StoreError {
    /// Whether trying again may succeed: the backend failed or could not be reached. Damaged
    /// data, a missing row or a bad argument stay what they are however often they are tried.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Backend(_))
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl ToString) -> Self {
        Self::Corrupt {
            what,
            reason: reason.to_string(),
        }
    }
}
