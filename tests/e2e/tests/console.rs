//! The web console, served by a real pipeline's ingest at `/console` and driven in a real
//! browser: Debian's Chromium through Playwright (`console/tests/browser.mjs`, which signs in,
//! creates an endpoint, follows a delivery, forces a failure, dry-runs and replays the dead
//! letter, and checks a tenant key sees only its tenant). Here: the pipeline, the console's
//! files as served (no token needed, a strict content security policy), and the browser run.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use hookstream_e2e::{Pipeline, Service, TOKEN};

/// The browser run's bound: its own waits are 60 s each, the whole run takes well under this.
const BROWSER_RUN: Duration = Duration::from_secs(300);

fn console_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../console")
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let console = console_dir();
    let dist = console.join("dist");
    assert!(
        dist.join("index.html").is_file() && console.join("node_modules/playwright-core").is_dir(),
        "the console is not built in {}: run `make console` (`make test` does)",
        console.display()
    );
    let dist_text = dist.to_string_lossy().into_owned();
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_CONSOLE_DIR", dist_text.as_str())]).await;
    pipeline.start_service(Service::Replay).await;
    let base = pipeline.api.base.clone();

    // The app's files need no token (they hold no data), and forbid what the app never does.
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{base}/console/"))
        .send()
        .await
        .expect("GET /console/");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("a policy")
        .to_owned();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    assert!(
        page.text()
            .await
            .expect("the page")
            .contains("/console/app.js")
    );
    let script = http
        .get(format!("{base}/console/app.js"))
        .send()
        .await
        .expect("GET /console/app.js");
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.contains("javascript")),
        "{:?}",
        script.headers()
    );
    let missing = http
        .get(format!("{base}/console/no-such-file.js"))
        .send()
        .await
        .expect("GET a missing file");
    assert_eq!(missing.status(), 404);
    // The API beside it still wants its token.
    let api = http
        .get(format!("{base}/v1/whoami"))
        .send()
        .await
        .expect("GET /v1/whoami");
    assert_eq!(api.status(), 401);

    let mut browser = tokio::process::Command::new("node");
    browser
        .arg("tests/browser.mjs")
        .current_dir(&console)
        .env("HOOKSTREAM_API_URL", &base)
        .env("HOOKSTREAM_API_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let run = tokio::time::timeout(BROWSER_RUN, browser.output())
        .await
        .expect("the browser run finishes within its bound")
        .expect("node runs (installed by `make tools`)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "the browser test failed:\n{said}\n--- ingest log ---\n{}",
        pipeline.log_tail(Service::Ingest)
    );
    assert!(said.contains("console browser test passed"), "{said}");
}
