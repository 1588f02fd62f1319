//! The web console: the built single-page app (`console/dist`, from `make console`) served at
//! `/console` by the API listener that serves the management API, so its pages call the API
//! on their own origin with the token the user signs in with. It holds no data and adds no
//! rights: every page asks the API, which scopes every answer to the caller.

use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// Where the console is served.
pub const PATH: &str = "/console";

/// The file every page of the app starts from.
const INDEX: &str = "index.html";

/// Why the console cannot be served from `dir`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the console's built files are not in {dir} (no {INDEX}): build them with `make console`, \
     or leave HOOKSTREAM_CONSOLE_DIR unset to serve no console"
)]
pub struct NotBuilt {
    dir: String,
}

/// Checks at start that `dir` holds a built console, so a wrong path fails the start rather
/// than every page later.
pub fn check(dir: &Path) -> Result<(), NotBuilt> {
    if dir.join(INDEX).is_file() {
        Ok(())
    } else {
        Err(NotBuilt {
            dir: dir.display().to_string(),
        })
    }
}

/// Who may show the console in a frame: its own origin, and the origins configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameAncestors(Vec<String>);

/// `HOOKSTREAM_CONSOLE_FRAME_ANCESTORS`: space-separated `http(s)://host[:port]` origins.
pub fn parse_frame_ancestors(text: &str) -> Result<FrameAncestors, String> {
    let origins: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    for origin in &origins {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or_default();
        let host_and_port = rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:*[]".contains(c));
        // A wildcard names subdomains of one site (`*.example.com`), never every site.
        let host = rest.split(':').next().unwrap_or_default();
        let wildcard_ok = match host.strip_prefix("*.") {
            Some(site) => !site.contains('*') && site.contains('.'),
            None => !host.contains('*'),
        };
        if rest.is_empty() || !host_and_port || !wildcard_ok {
            return Err(format!(
                "`{origin}` is not an origin such as https://app.example.com (scheme, host and \
                 optional port; no path)"
            ));
        }
    }
    Ok(FrameAncestors(origins))
}

/// Only what the console's own files need: scripts, styles and calls to this origin; framed
/// only by this origin and the configured ones (the page handles a token).
fn content_security_policy(frame_ancestors: &FrameAncestors) -> HeaderValue {
    let mut ancestors = vec!["'self'".to_owned()];
    ancestors.extend(frame_ancestors.0.iter().cloned());
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {}",
        ancestors.join(" ")
    );
    // The origins were checked to be printable ASCII without separators.
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(
        "default-src 'none'; frame-ancestors 'none'",
    ))
}

/// The `/console` routes: the app's files from `dir` (the app routes its pages itself, after
/// `#`, so no other path needs an answer). Without `dir`, `/console` says how to get one.
pub fn routes(dir: Option<&Path>, frame_ancestors: &FrameAncestors) -> Router {
    let Some(dir) = dir else {
        return Router::new()
            .route(PATH, get(not_installed))
            .route(&format!("{PATH}/"), get(not_installed))
            .route(&format!("{PATH}/{{*rest}}"), get(not_installed));
    };
    Router::new()
        .nest_service(PATH, ServeDir::new(dir))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(frame_ancestors),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Revalidated on every load (ServeDir answers 304 when unchanged), so an upgrade's
        // files are never mixed with a cached older app.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
}

async fn not_installed() -> impl IntoResponse {
    crate::api::console_not_installed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_the_built_page_is_refused_at_start() {
        let dir = tempfile::tempdir().expect("a folder");
        let err = check(dir.path()).expect_err("no index.html");
        assert!(err.to_string().contains("make console"), "{err}");
        std::fs::write(dir.path().join(INDEX), "<!doctype html>").expect("a page");
        check(dir.path()).expect("a built console");
    }

    #[test]
    fn frame_ancestors_are_origins_only() {
        parse_frame_ancestors("https://*.example.com").expect("one site's subdomains");
        let ancestors = parse_frame_ancestors("https://app.example.com http://localhost:3000")
            .expect("two origins");
        let policy = content_security_policy(&ancestors);
        assert!(
            policy
                .to_str()
                .expect("ASCII")
                .ends_with("frame-ancestors 'self' https://app.example.com http://localhost:3000"),
            "{policy:?}"
        );
        for refused in [
            "app.example.com",
            "https://app.example.com/path",
            "https://a.example.com; script-src *",
            "javascript:alert(1)",
            "https://",
            "https://*",
            "https://*:443",
            "https://*.com",
        ] {
            assert!(parse_frame_ancestors(refused).is_err(), "{refused}");
        }
    }

    #[tokio::test]
    async fn without_a_console_the_path_says_how_to_get_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("its address");
        let server = tokio::spawn(async move {
            axum::serve(listener, routes(None, &FrameAncestors::default())).await
        });
        for path in ["/console", "/console/", "/console/app.js"] {
            let answer = reqwest::get(format!("http://{addr}{path}"))
                .await
                .expect("an answer");
            assert_eq!(answer.status(), 404, "{path}");
            let problem: serde_json::Value = answer.json().await.expect("a problem document");
            assert!(
                problem["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("console-not-installed")),
                "{problem}"
            );
            assert!(
                problem["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("HOOKSTREAM_CONSOLE_DIR")),
                "{problem}"
            );
        }
        server.abort();
    }
}
