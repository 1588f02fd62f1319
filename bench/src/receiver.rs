//! The bench receiver: an HTTP server on 127.0.0.1 that verifies each webhook's signature,
//! counts it, and notes when it arrived, as fast as it can (or slowly, for chosen endpoints).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::Semaphore;

use hookstream_signing::{SigningSecret, verify};

/// When each event of a phase was meant to be sent to ingest, acknowledged by it and first
/// received here, in nanoseconds since the bench started (0: not yet).
pub struct Timeline {
    pub sent: Vec<AtomicU64>,
    pub answered: Vec<AtomicU64>,
    pub received: Vec<AtomicU64>,
}

impl Timeline {
    pub fn new(events: usize) -> Self {
        Self {
            sent: (0..events).map(|_| AtomicU64::new(0)).collect(),
            answered: (0..events).map(|_| AtomicU64::new(0)).collect(),
            received: (0..events).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// What the receiver does for the current phase.
#[derive(Default)]
pub struct Phase {
    pub id: u64,
    /// Per-event times: the first arrival of each event counts, later ones are duplicates.
    pub timeline: Option<Arc<Timeline>>,
    /// One permit back per delivered event (the load generator's window of undelivered events).
    pub window: Option<Arc<Semaphore>>,
    /// Endpoints (by path) that answer after a delay.
    pub slow: HashSet<String>,
    pub slow_delay: Duration,
}

pub struct Shared {
    pub started: Instant,
    pub secrets: RwLock<HashMap<String, SigningSecret>>,
    pub phase: RwLock<Arc<Phase>>,
    /// Webhooks of the current phase delivered (verified; first arrivals only).
    pub delivered: AtomicU64,
    /// Webhooks of the current phase that arrived again after their first arrival.
    pub duplicates: AtomicU64,
    /// Webhooks of the current phase whose event the phase's timeline does not cover.
    pub untracked: AtomicU64,
    pub bad_signatures: AtomicU64,
}

impl Shared {
    pub fn nanos(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Starts a new phase: counters back to zero.
    pub fn begin(&self, phase: Phase) {
        self.delivered.store(0, Ordering::SeqCst);
        self.duplicates.store(0, Ordering::SeqCst);
        self.untracked.store(0, Ordering::SeqCst);
        if let Ok(mut current) = self.phase.write() {
            *current = Arc::new(phase);
        }
    }
}

pub struct Receiver {
    pub url: String,
    pub shared: Arc<Shared>,
}

impl Receiver {
    pub async fn start(started: Instant) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            started,
            secrets: RwLock::new(HashMap::new()),
            phase: RwLock::new(Arc::new(Phase::default())),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
            bad_signatures: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/hook/{phase}/{endpoint}", post(receive))
            .route("/ceiling", post(ceiling))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the bench receiver")?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, shared })
    }

    /// Registers an endpoint's secret under its path (`/hook/<phase>/<n>`).
    pub fn add_endpoint(&self, path: &str, secret: &str) -> anyhow::Result<()> {
        let secret = SigningSecret::parse(secret).context("an endpoint secret")?;
        if let Ok(mut secrets) = self.shared.secrets.write() {
            secrets.insert(path.to_owned(), secret);
        }
        Ok(())
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The (phase, seq) the load generator put in the payload of each event a webhook carries:
/// one, or each of a batch's (a JSON array of webhook bodies). `None` for an event without.
fn event_tags(body: &[u8]) -> Vec<Option<(u64, usize)>> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(items)) => items.iter().map(event_tag).collect(),
        Ok(value) => vec![event_tag(&value)],
        Err(_) => vec![None],
    }
}

fn event_tag(value: &serde_json::Value) -> Option<(u64, usize)> {
    let data = value.get("data")?;
    Some((
        data.get("phase")?.as_u64()?,
        data.get("seq")?.as_u64()? as usize,
    ))
}

fn verified(shared: &Shared, path: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Ok(secrets) = shared.secrets.read() else {
        return false;
    };
    let Some(secret) = secrets.get(path) else {
        return false;
    };
    let timestamp = header(headers, "webhook-timestamp").parse().unwrap_or(0);
    verify(
        secret,
        header(headers, "webhook-id"),
        timestamp,
        body,
        header(headers, "webhook-signature"),
    )
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path((phase_id, endpoint)): Path<(u64, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = shared.nanos();
    let path = format!("/hook/{phase_id}/{endpoint}");
    if !verified(&shared, &path, &headers, &body) {
        shared.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let phase = shared
        .phase
        .read()
        .map(|p| Arc::clone(&p))
        .unwrap_or_default();
    if phase.slow.contains(&path) {
        tokio::time::sleep(phase.slow_delay).await;
    }
    if phase.id == phase_id {
        for tag in event_tags(&body) {
            if first_arrival(&shared, &phase, phase_id, tag, at) {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(window) = &phase.window {
                    window.add_permits(1);
                }
            }
        }
    }
    StatusCode::NO_CONTENT
}

/// Notes an event's arrival; false (counted as a duplicate) when it came before.
fn first_arrival(
    shared: &Shared,
    phase: &Phase,
    phase_id: u64,
    tag: Option<(u64, usize)>,
    at: u64,
) -> bool {
    let slot = phase.timeline.as_ref().and_then(|timeline| {
        let (tag_phase, seq) = tag?;
        (tag_phase == phase_id).then(|| timeline.received.get(seq))?
    });
    let Some(slot) = slot else {
        shared.untracked.fetch_add(1, Ordering::Relaxed);
        return true;
    };
    if slot
        .compare_exchange(0, at.max(1), Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        true
    } else {
        shared.duplicates.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// The ceiling: the same verification work, no pipeline in front.
async fn ceiling(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if verified(&shared, "/ceiling", &headers, &body) {
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        StatusCode::NO_CONTENT
    } else {
        shared.bad_signatures.fetch_add(1, Ordering::Relaxed);
        StatusCode::UNAUTHORIZED
    }
}
