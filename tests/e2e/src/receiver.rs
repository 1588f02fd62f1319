//! A webhook receiver on 127.0.0.1 that records every request it gets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::watch;

use hookstream_signing::{SigningSecret, verify};

/// One webhook as the receiver got it.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The status the receiver answered this request with; 0 when it answered too late for
    /// the sender to hear (a timeout), and while a held request is not answered yet. A held
    /// request whose sender hung up first (timed out, or was killed) stays 0.
    pub answered: u16,
    /// When the request arrived.
    pub arrived: std::time::SystemTime,
}

impl Webhook {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("the webhook body is JSON")
    }

    /// Whether the Standard Webhooks signature verifies with `secret`.
    pub fn signature_verifies(&self, secret: &str) -> bool {
        let secret = SigningSecret::parse(secret).expect("a whsec_ secret");
        let timestamp: i64 = self
            .header("webhook-timestamp")
            .parse()
            .expect("webhook-timestamp is a number");
        verify(
            &secret,
            self.header("webhook-id"),
            timestamp,
            self.body.as_bytes(),
            self.header("webhook-signature"),
        )
    }
}

/// Verifies webhooks with the reference `standardwebhooks` Python library (installed by
/// `make tools`), so the signatures are checked by code Hookstream did not write.
/// Each item is a webhook and the secret of its endpoint.
pub fn verify_with_reference_library(webhooks: &[(&Webhook, &str)]) {
    run_verifier("verify_standard_webhooks.py", webhooks);
}

/// Verifies the `v1a` (ed25519) signatures of webhooks with the README's Python verifier, on
/// the `cryptography` package (installed by `make tools`): code Hookstream did not write checks
/// them. Each item is a webhook and the `whpk_` public key of its endpoint.
pub fn verify_v1a_with_cryptography(webhooks: &[(&Webhook, &str)]) {
    run_verifier("verify_v1a_webhooks.py", webhooks);
}

/// Runs a Python verifier of this crate on a JSON list of `{"secret", "headers", "body"}`.
fn run_verifier(script: &str, webhooks: &[(&Webhook, &str)]) {
    use std::io::Write;
    let items: Vec<serde_json::Value> = webhooks
        .iter()
        .map(|(w, secret)| serde_json::json!({"secret": secret, "headers": w.headers, "body": w.body}))
        .collect();
    let script = format!("{}/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running python3 (make tools installs the verifiers' packages)");
    child
        .stdin
        .take()
        .expect("stdin of the verifier")
        .write_all(serde_json::Value::from(items).to_string().as_bytes())
        .expect("writing to the verifier");
    let output = child.wait_with_output().expect("the verifier's result");
    assert!(
        output.status.success(),
        "{script} refused signatures:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Shared {
    received: Mutex<Vec<Webhook>>,
    count: watch::Sender<usize>,
    status: AtomicU16,
    reply: Mutex<String>,
    /// While true, requests are recorded but not answered.
    held: watch::Sender<bool>,
    /// When set to n > 0, every n-th request is answered 503 (a flapping endpoint).
    fail_every: std::sync::atomic::AtomicUsize,
    /// Answers to give first, one per request, before the default one.
    script: Mutex<std::collections::VecDeque<Scripted>>,
    /// How long each answer takes, in milliseconds: a slow endpoint.
    answer_after_ms: AtomicU64,
    /// While set, each request gets a random behaviour (see [`Chaos`]).
    chaos: Mutex<Option<Chaos>>,
    /// How many of the next requests to hold until [`Receiver::release`] (the rest are answered).
    hold_next: std::sync::atomic::AtomicUsize,
    /// Bumped by [`Receiver::release`]; requests held by `hold_next` wait for it to move.
    released: watch::Sender<u64>,
    /// Requests arrived and not answered yet, and the most there were at once.
    open: std::sync::atomic::AtomicUsize,
    peak_open: std::sync::atomic::AtomicUsize,
}

/// Random behaviour per request, for the fault-injection checker: mostly 2xx, and 5xx, 429 with
/// a sane or an absurd `Retry-After`, slow answers, answers later than the sender waits, and
/// (when `gone_per_mille` > 0) `410 Gone`.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// The state of a xorshift generator: the same seed, the same behaviours.
    pub state: u64,
    /// Answers later than this are not heard by the sender (its request timeout).
    pub sender_timeout: Duration,
    /// How many requests in a thousand are answered `410 Gone`.
    pub gone_per_mille: u64,
}

/// What a chaotic receiver does with one request.
struct Behaviour {
    status: u16,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
    /// The answer comes after the sender gave up.
    too_late: bool,
}

impl Chaos {
    fn next(&mut self) -> u64 {
        // xorshift64*: a fixed sequence per seed, good enough to pick behaviours.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn behaviour(&mut self) -> Behaviour {
        let roll = self.next() % 1000;
        let plain = |status| Behaviour {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            too_late: false,
        };
        match roll {
            r if r < self.gone_per_mille => plain(410),
            r if r < 600 => plain(200),
            r if r < 680 => plain(500),
            r if r < 730 => Behaviour {
                headers: vec![("retry-after", "1".into())],
                ..plain(503)
            },
            r if r < 750 => Behaviour {
                headers: vec![("retry-after", "31536000".into())],
                ..plain(429)
            },
            r if r < 770 => Behaviour {
                headers: vec![("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT".into())],
                ..plain(429)
            },
            r if r < 850 => Behaviour {
                delay: self.sender_timeout / 4,
                ..plain(200)
            },
            r if r < 900 => Behaviour {
                delay: self.sender_timeout + Duration::from_millis(500),
                too_late: true,
                ..plain(200)
            },
            _ => plain(200),
        }
    }
}

/// One scripted answer: a status and extra headers.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl Scripted {
    /// An answer with this status and no extra headers.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
        }
    }
}

/// A receiver answering every webhook with a set status (200 unless changed).
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a receiver on 127.0.0.1");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("receiver address")
        );
        let (count, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            count,
            status: AtomicU16::new(200),
            reply: Mutex::new("ok".to_owned()),
            held: watch::channel(false).0,
            script: Mutex::new(std::collections::VecDeque::new()),
            fail_every: std::sync::atomic::AtomicUsize::new(0),
            answer_after_ms: AtomicU64::new(0),
            chaos: Mutex::new(None),
            hold_next: std::sync::atomic::AtomicUsize::new(0),
            released: watch::channel(0).0,
            open: std::sync::atomic::AtomicUsize::new(0),
            peak_open: std::sync::atomic::AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/hook", post(record))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            shared,
            _server: server,
        }
    }

    /// Answers later webhooks with `status` and `body`.
    pub fn respond_with(&self, status: u16, body: &str) {
        self.shared.status.store(status, Ordering::SeqCst);
        *self.shared.reply.lock().expect("reply lock") = body.to_owned();
    }

    /// Answers the next requests with these statuses and headers, one each, in order; then goes
    /// back to the default answer.
    pub fn script(&self, answers: Vec<Scripted>) {
        self.shared
            .script
            .lock()
            .expect("script lock")
            .extend(answers);
    }

    /// Answers every `n`-th request with 503 from now on, the rest as usual.
    pub fn fail_every(&self, n: usize) {
        self.shared.fail_every.store(n, Ordering::SeqCst);
    }

    /// Takes `delay` over every later answer: a slow endpoint (the request is recorded when it
    /// arrives, the answer goes out after the delay).
    pub fn answer_after(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.answer_after_ms.store(millis, Ordering::SeqCst);
    }

    /// From now on, answers each request with a random behaviour.
    pub fn chaos(&self, chaos: Chaos) {
        *self.shared.chaos.lock().expect("chaos lock") = Some(chaos);
    }

    /// From now on, records requests but does not answer them until [`Receiver::release`]: an
    /// endpoint as slow as the test wants, without timing.
    pub fn hold(&self) {
        self.shared.held.send_replace(true);
    }

    /// Holds the next `n` requests unanswered until [`Receiver::release`], and answers the
    /// ones after them as usual: deliveries stuck while later ones go through.
    pub fn hold_next(&self, n: usize) {
        self.shared.hold_next.store(n, Ordering::SeqCst);
    }

    /// Answers the requests held by [`Receiver::hold_next`] so far, and goes on holding as many
    /// of the next ones as it has left to hold.
    pub fn release_held(&self) {
        self.shared.released.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Answers the held requests and every later one.
    pub fn release(&self) {
        self.shared.held.send_replace(false);
        self.shared.hold_next.store(0, Ordering::SeqCst);
        // Not `send_replace(borrow() + 1)`: the borrow's read lock would block the write.
        self.shared.released.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Requests arrived and not answered yet, whose sender is still there.
    pub fn open_requests(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Starts counting [`Receiver::peak_concurrency`] again from the requests open now.
    pub fn reset_peak_concurrency(&self) {
        let open = self.shared.open.load(Ordering::SeqCst);
        self.shared.peak_open.store(open, Ordering::SeqCst);
    }

    /// The most requests this receiver had arrived and not yet answered at one time.
    pub fn peak_concurrency(&self) -> usize {
        self.shared.peak_open.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` webhooks arrived and returns all received so far.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Webhook> {
        let mut count = self.shared.count.subscribe();
        let reached = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await;
        let received = self.received();
        assert!(
            matches!(reached, Ok(Ok(_))),
            "expected {n} webhooks within {timeout:?}, got {}",
            received.len()
        );
        received
    }

    /// Requests for a `webhook-id` that had already been answered 2xx: true duplicates, as
    /// opposed to retries of a failed attempt. Returns the ids, once per duplicate request.
    pub fn duplicates(&self) -> Vec<String> {
        let mut delivered = std::collections::HashSet::new();
        let mut duplicates = Vec::new();
        for webhook in self.received() {
            let id = webhook.header("webhook-id").to_owned();
            if delivered.contains(&id) {
                duplicates.push(id.clone());
            }
            if (200..300).contains(&webhook.answered) {
                delivered.insert(id);
            }
        }
        duplicates
    }

    /// Every webhook received so far.
    pub fn received(&self) -> Vec<Webhook> {
        self.shared.received.lock().expect("received lock").clone()
    }
}

/// A request arrived and not answered yet.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sets the status the `index`th request was answered with.
fn set_answered(shared: &Shared, index: usize, answered: u16) {
    if let Some(webhook) = shared
        .received
        .lock()
        .expect("received lock")
        .get_mut(index)
    {
        webhook.answered = answered;
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut webhook = Webhook {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: 0,
        arrived: std::time::SystemTime::now(),
    };
    // Before the request counts as held alone, so a release from then on is seen.
    let mut released = shared.released.subscribe();
    // Decide the answer and record the request under one lock, so counts and answers agree.
    let (total, status, extra_headers, chaos_delay, answered, held_alone) = {
        let mut received = shared.received.lock().expect("received lock");
        let total = received.len() + 1;
        let every = shared.fail_every.load(Ordering::SeqCst);
        let scripted = shared.script.lock().expect("script lock").pop_front();
        let chaotic = shared
            .chaos
            .lock()
            .expect("chaos lock")
            .as_mut()
            .map(Chaos::behaviour);
        let (status, extra, delay, heard) = if let Some(b) = chaotic {
            (b.status, b.headers, b.delay, !b.too_late)
        } else if every > 0 && total % every == 0 {
            (503, vec![], Duration::ZERO, true)
        } else if let Some(answer) = scripted {
            (answer.status, answer.headers, Duration::ZERO, true)
        } else {
            (
                shared.status.load(Ordering::SeqCst),
                vec![],
                Duration::ZERO,
                true,
            )
        };
        let answered = if heard { status } else { 0 };
        // Decided under the lock too, so a held request never shows an answer it has not had.
        let held_alone = shared
            .hold_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let held = held_alone || *shared.held.borrow();
        // A held request is answered when released, and never if the sender hangs up first:
        // then this handler is dropped during the wait.
        webhook.answered = if held { 0 } else { answered };
        received.push(webhook);
        (total, status, extra, delay, answered, held_alone)
    };
    shared.count.send_replace(total);
    let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak_open.fetch_max(open, Ordering::SeqCst);
    // Closed when answered, or when the sender hangs up first (the handler is dropped).
    let _open = Open(Arc::clone(&shared));
    let mut held = shared.held.subscribe();
    if held_alone {
        let _ = released.changed().await;
    }
    let _ = held.wait_for(|held| !*held).await;
    set_answered(&shared, total - 1, answered);
    let delay = Duration::from_millis(shared.answer_after_ms.load(Ordering::SeqCst)) + chaos_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let reply = shared.reply.lock().expect("reply lock").clone();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, reply).into_response();
    for (name, value) in extra_headers {
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
