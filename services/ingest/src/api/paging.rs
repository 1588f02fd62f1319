//! `limit` and `after` query parameters of list routes.

use std::collections::HashMap;

use hookstream_store::PageRequest;

use super::problem::Problem;

pub fn page_request(query: &HashMap<String, String>) -> Result<PageRequest, Problem> {
    let limit = match query.get("limit") {
        None => PageRequest::DEFAULT_LIMIT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=PageRequest::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Problem::invalid(
                    "limit",
                    format!(
                        "`limit` must be a whole number from 1 to {}",
                        PageRequest::MAX_LIMIT
                    ),
                )
            })?,
    };
    Ok(PageRequest {
        after: query.get("after").cloned(),
        limit,
    })
}

/// The JSON shape of a page: `{"data": [...], "next": cursor or null}`.
pub fn page_json<T>(
    page: hookstream_store::Page<T>,
    render: impl Fn(&T) -> serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "data": page.items.iter().map(render).collect::<Vec<_>>(),
        "next": page.next,
    })
}
