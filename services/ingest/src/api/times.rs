//! Times as the API writes them: RFC 3339, in UTC.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `at` in RFC 3339; empty should it not format (a year beyond 9999).
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}
