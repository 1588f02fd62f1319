//! The shapes of request and response bodies, for the OpenAPI document. The handlers read and
//! write JSON field by field (so each bad field gets its own problem); these types say what
//! those fields are. The schemathesis test checks every answer against them.
// Read only by the OpenAPI derive, never constructed.
#![allow(dead_code)]

use serde_json::Value;
use utoipa::{IntoParams, IntoResponses, ToSchema};

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// `urn:hookstream:problem:<kind>`, stable.
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// The field at fault, when one is.
    field: Option<String>,
}

/// The answers every operation may give besides its own: a problem document.
#[derive(IntoResponses)]
pub enum Problems {
    /// Invalid input, unknown, unauthorised or forbidden.
    #[response(
        status = "4XX",
        description = "a problem document: invalid input, unknown, unauthorised or forbidden",
        content_type = "application/problem+json"
    )]
    Client(ProblemDoc),
    #[response(
        status = "5XX",
        description = "the store or Kafka is unavailable; try again",
        content_type = "application/problem+json"
    )]
    Server(ProblemDoc),
}

/// Paging of every list: `?limit=&after=`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// `POST /v1/endpoints`.
#[derive(ToSchema)]
pub struct EndpointCreate {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    tenant: String,
    /// `https` (or what the allow-list opens) to a public destination.
    #[schema(format = "uri", max_length = 2048)]
    url: String,
    /// Empty or `["*"]`: every type of the tenant's own. `hookstream.*` types (operational
    /// events) make it an operator endpoint.
    #[schema(max_items = 256)]
    event_types: Option<Vec<String>>,
    #[schema(minimum = 1)]
    max_attempts: Option<u32>,
    /// No limit when absent or `null`.
    rate_limit: Option<RateLimit>,
    /// `partition` (the default, also for `null`): one request at a time, first attempts in
    /// the order the events were sent. `none`: no order, up to `max_in_flight` requests at once.
    /// `strict`: each delivery waits until the one before it is delivered or dead-lettered,
    /// across retries, restarts and rebalances.
    #[schema(value_type = Option<String>, pattern = "^(none|partition|strict)$")]
    ordering: Option<String>,
    /// Requests at once under `"ordering": "none"` (10 when absent or `null`); one at a time
    /// under `partition` and `strict` whatever it says.
    #[schema(minimum = 1, maximum = 500)]
    max_in_flight: Option<u32>,
    /// Under `strict`, what a dead letter does to the deliveries behind it: `hold` (the
    /// default, also for `null`) waits for its replay, which then goes out first; `continue`
    /// goes on with the next.
    #[schema(value_type = Option<String>, pattern = "^(hold|continue)$")]
    on_dead_letter: Option<String>,
    /// Batched webhooks (none when absent or `null`); not with `"ordering": "strict"`.
    batch: Option<BatchSetting>,
    /// The endpoint's own health rules (the installation's when absent or `null`).
    health_rules: Option<HealthRules>,
    /// `hmac-sha256` (the default, also for `null`): `v1` signatures with a `whsec_` secret
    /// shown in this answer. `ed25519`: `v1a` signatures, verified with the `public_key`
    /// (`whpk_`); the secret key stays sealed in the store.
    #[schema(value_type = Option<String>, pattern = "^(hmac-sha256|ed25519)$")]
    signing: Option<String>,
}

/// Deliveries sent together: one POST whose body is a JSON array of the usual webhook bodies,
/// in the order the events were sent, signed once with the batch's own `webhook-id`. A batch
/// goes when it holds `max_events`, or when its first delivery has waited `max_wait`.
#[derive(ToSchema)]
pub struct BatchSetting {
    #[schema(minimum = 1, maximum = 1000)]
    max_events: u32,
    /// A delay such as `500ms`, `30s` or `2m`: at least 10 ms, at most the longest retry delay.
    #[schema(pattern = "^[0-9]+(ms|s|m|h)$")]
    max_wait: String,
}

/// An endpoint's own health rules: each one given replaces the installation's
/// (`HOOKSTREAM_HEALTH_*`); see the README's "Endpoint health". A warning begins when the
/// success rate over `warn_window` is under `warn_success_rate` with at least
/// `warn_min_attempts` attempts, or more than `warn_streak` attempts in a row failed; the
/// endpoint is disabled once it has failed without a success for `disable_after`, or
/// `disable_streak` attempts in a row failed.
#[derive(ToSchema)]
pub struct HealthRules {
    #[schema(exclusive_minimum = 0, maximum = 1)]
    warn_success_rate: Option<f64>,
    #[schema(minimum = 1)]
    warn_min_attempts: Option<u64>,
    /// Whole minutes from `1m` to `60m`.
    #[schema(pattern = "^[0-9]+m$")]
    warn_window: Option<String>,
    #[schema(minimum = 1)]
    warn_streak: Option<u64>,
    /// From `1m` to `365d` (`30m`, `12h`, `5d`), or `never`.
    #[schema(pattern = "^([0-9]+(s|m|h|d)|never)$")]
    disable_after: Option<String>,
    /// More than `warn_streak` (or, when not given, 10).
    #[schema(minimum = 2)]
    disable_streak: Option<u64>,
}

/// At most `per_second` deliveries a second to the endpoint, `burst` at once after a quiet
/// spell. Waiting for the limit spends no attempt and holds up no other endpoint.
#[derive(ToSchema)]
pub struct RateLimit {
    #[schema(minimum = 0.01, maximum = 10000)]
    per_second: f64,
    /// One second's worth (at least 1) when left out.
    #[schema(minimum = 1, maximum = 10000)]
    burst: Option<u32>,
}

/// `PATCH /v1/endpoints/{id}`: only the fields given change.
#[derive(ToSchema)]
pub struct EndpointPatch {
    #[schema(format = "uri", max_length = 2048)]
    url: Option<String>,
    #[schema(max_items = 256)]
    event_types: Option<Vec<String>>,
    disabled: Option<bool>,
    /// `null`: back to the retry policy's limit.
    #[schema(minimum = 1)]
    max_attempts: Option<u32>,
    /// `null`: no limit.
    rate_limit: Option<RateLimit>,
    /// `none`, `partition` or `strict` (`null`: `partition`). Changing it with deliveries in
    /// flight loses none: the change holds from the endpoint's next delivery on.
    #[schema(value_type = Option<String>, pattern = "^(none|partition|strict)$")]
    ordering: Option<String>,
    /// `null`: back to the default (10).
    #[schema(minimum = 1, maximum = 500)]
    max_in_flight: Option<u32>,
    /// `hold` or `continue` (`null`: `hold`). Changed to `continue`, a queue held at a dead
    /// letter goes on.
    #[schema(value_type = Option<String>, pattern = "^(hold|continue)$")]
    on_dead_letter: Option<String>,
    /// `null`: no batching. Changed with deliveries in flight, it holds from the endpoint's
    /// next batch (or delivery) on; none is lost.
    batch: Option<BatchSetting>,
    /// `null`: the installation's rules. Replaces the endpoint's rules as a whole.
    health_rules: Option<HealthRules>,
}

#[derive(ToSchema)]
pub struct Circuit {
    /// `closed`, `open` or `half_open`.
    state: String,
    open_until: Option<String>,
}

#[derive(ToSchema)]
pub struct Endpoint {
    id: String,
    tenant: String,
    url: String,
    event_types: Vec<String>,
    disabled: bool,
    max_attempts: Option<u32>,
    rate_limit: Option<RateLimit>,
    /// `none`, `partition` or `strict`.
    ordering: String,
    /// Requests at once under `"ordering": "none"`; `partition` and `strict` send one at a time.
    max_in_flight: u32,
    /// Under `strict`: `hold` or `continue` at a dead letter.
    on_dead_letter: String,
    /// `null` when the endpoint takes one delivery per request.
    batch: Option<BatchSetting>,
    /// The rules the endpoint sets itself; `null` when it follows the installation's.
    health_rules: Option<HealthRules>,
    paused: bool,
    circuit: Circuit,
    /// `hmac-sha256` or `ed25519`.
    signing: String,
    /// The `whpk_` key that verifies `v1a` signatures; `null` under `hmac-sha256`.
    public_key: Option<String>,
    previous_secret_expires_at: Option<String>,
    /// The retiring key's `whpk_`, when the secret it replaced was an ed25519 one.
    previous_public_key: Option<String>,
    created_at: String,
    updated_at: String,
    /// An HMAC secret, only when the endpoint is created and when its secret is rotated.
    secret: Option<String>,
    /// Only in lists (`GET /v1/endpoints`): as `GET /v1/endpoints/{id}/health` shows it.
    health: Option<EndpointHealth>,
}

/// `GET /v1/endpoints/{id}/health`.
#[derive(ToSchema)]
pub struct EndpointHealth {
    /// `disabled` (by its rules, an operator or a `410`), `warning` (a warning of its rules
    /// is in force) or `healthy`.
    #[schema(pattern = "^(healthy|warning|disabled)$")]
    status: String,
    /// The warning in force: since when, and why.
    warning: Option<HealthNotice>,
    /// While the endpoint is disabled by its health rules: when, and why.
    disabled_by_rules: Option<HealthNotice>,
    /// `5m` (the minute under way and the four before it), then `1h` (the same, sixty).
    windows: Vec<HealthWindow>,
    /// Attempts failed in a row since the last success.
    failure_streak: u64,
    /// When the current run of failures began; `null` while the last attempt succeeded.
    failing_since: Option<String>,
    last_success_at: Option<String>,
    last_failure: Option<LastFailure>,
}

#[derive(ToSchema)]
pub struct HealthNotice {
    at: String,
    reason: String,
}

#[derive(ToSchema)]
pub struct HealthWindow {
    /// `5m` or `1h`.
    window: String,
    /// Requests made to the endpoint (a batched webhook is one).
    attempts: u64,
    succeeded: u64,
    /// `succeeded / attempts`; `null` without attempts.
    success_rate: Option<f64>,
    latency_ms: LatencyPercentiles,
}

/// Each the upper bound of the latency bucket the percentile falls in (5, 10, 25, 50, 100,
/// 250, 500, 1000, 2500, 5000, 10000 ms); `null` without attempts or past 10 s.
#[derive(ToSchema)]
pub struct LatencyPercentiles {
    p50: Option<u64>,
    p90: Option<u64>,
    p99: Option<u64>,
}

#[derive(ToSchema)]
pub struct LastFailure {
    at: String,
    /// The attempt class, such as `TIMEOUT` or `HTTP_5XX_RETRYABLE`.
    class: String,
}

#[derive(ToSchema)]
pub struct EndpointPage {
    data: Vec<Endpoint>,
    /// The cursor of the next page (`?after=`), `null` on the last.
    next: Option<String>,
}

/// `POST /v1/endpoints/{id}/secret/rotate`.
#[derive(ToSchema)]
pub struct SecretRotation {
    /// How long the old secret also signs, such as `24h` or `0s`.
    overlap: Option<String>,
    /// The new secret's scheme, `hmac-sha256` or `ed25519`; the endpoint's current one when
    /// absent or `null`.
    #[schema(value_type = Option<String>, pattern = "^(hmac-sha256|ed25519)$")]
    signing: Option<String>,
}

#[derive(ToSchema)]
pub struct Secret {
    /// The `whsec_` secret; `null` under ed25519, whose secret key never leaves the store.
    secret: Option<String>,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<String>,
    /// The `whpk_` key of an ed25519 endpoint.
    public_key: Option<String>,
    previous_public_key: Option<String>,
}

/// Who a token is: `role` is `admin`, `tenant` (a tenant API key) or `portal` (a portal
/// link, with its `expires_at`); `tenant` is set for the last two.
#[derive(ToSchema)]
pub struct WhoAmI {
    #[schema(pattern = "^(admin|tenant|portal)$")]
    role: String,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    tenant: Option<String>,
    key_id: String,
    expires_at: Option<String>,
}

/// `POST /v1/tenants/{tenant}/portal-links`.
#[derive(ToSchema)]
pub struct PortalLinkCreate {
    /// Seconds the link lasts: 60 to 86400 (default 3600).
    #[schema(minimum = 60, maximum = 86400)]
    expires_in: Option<i64>,
}

/// A portal link: `path` opens the console with it (after the console's origin).
#[derive(ToSchema)]
pub struct PortalLink {
    /// `pl_…`: what the link creates is `created_by` `portal:pl_…`.
    id: String,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    tenant: String,
    path: String,
    token: String,
    expires_at: String,
}

/// One topic of the delivery path: `kind` is `deliveries`, `retry` or `dead-letters`;
/// `records`, `lag` and `partitions` are null and `error` says why when it could not be read.
#[derive(ToSchema)]
pub struct Queue {
    topic: String,
    #[schema(pattern = "^(deliveries|retry|dead-letters)$")]
    kind: String,
    group: String,
    records: Option<i64>,
    lag: Option<i64>,
    partitions: Option<u32>,
    error: Option<String>,
}

#[derive(ToSchema)]
pub struct Queues {
    data: Vec<Queue>,
    read_at: String,
}

#[derive(ToSchema)]
pub struct MinuteTraffic {
    /// The minute's start.
    minute: String,
    attempts: u64,
    succeeded: u64,
}

#[derive(ToSchema)]
pub struct OpenBreaker {
    endpoint_id: String,
    tenant: String,
    url: String,
    /// `open` or `half_open`.
    state: String,
    open_until: Option<String>,
}

#[derive(ToSchema)]
pub struct Overview {
    read_at: String,
    /// Seconds the figures cover: four whole minutes and the part of this one gone by.
    window_seconds: u64,
    attempts: u64,
    succeeded: u64,
    per_second: f64,
    /// Successes over attempts; null without attempts.
    success_rate: Option<f64>,
    /// Oldest first.
    minutes: Vec<MinuteTraffic>,
    /// Dispatchers heard from in the last 30 seconds.
    dispatchers_reporting: u64,
    /// At most 100.
    open_breakers: Vec<OpenBreaker>,
    /// Whether there may be more open breakers than listed.
    open_breakers_truncated: bool,
    sending_paused: bool,
}

#[derive(ToSchema)]
pub struct Control {
    sending_paused: bool,
}

/// `POST /v1/events`, and each event of a batch.
#[derive(ToSchema)]
pub struct EventCreate {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    tenant: String,
    #[schema(rename = "type", pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    event_type: String,
    /// Any JSON, at most 32 levels deep.
    payload: Value,
    #[schema(min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
}

#[derive(ToSchema)]
pub struct EventBatch {
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<EventCreate>,
}

#[derive(ToSchema)]
pub struct EventAccepted {
    id: String,
    deliveries: u32,
    /// `true` for a repeat of an idempotency key within the window.
    repeat: Option<bool>,
}

#[derive(ToSchema)]
pub struct EventBatchResults {
    /// One per event, in order: `{"status", "id", "deliveries"}` or `{"status", "problem"}`.
    results: Vec<Value>,
}

#[derive(ToSchema)]
pub struct Delivery {
    id: String,
    event_id: String,
    endpoint_id: String,
    tenant: String,
    event_type: String,
    /// `pending`, `delivering`, `delivered`, `retrying` or `dead_lettered`.
    status: String,
    attempts: u32,
    next_attempt_at: Option<String>,
    next_tier: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(ToSchema)]
pub struct DeliveryPage {
    data: Vec<Delivery>,
    next: Option<String>,
}

#[derive(ToSchema)]
pub struct Attempt {
    number: u32,
    started_at: String,
    latency_ms: u64,
    status_code: Option<u16>,
    class: String,
    response_snippet: String,
    error: Option<String>,
    next_attempt_at: Option<String>,
    tier: Option<String>,
}

#[derive(ToSchema)]
pub struct AttemptList {
    data: Vec<Attempt>,
}

#[derive(ToSchema)]
pub struct DeadLetter {
    delivery_id: String,
    /// The event: `id`, `tenant`, `type`, `payload`, `created_at`.
    event: Value,
    /// The endpoint as it stands: `id`, `url`, `disabled`, `deleted`.
    endpoint: Value,
    reason: String,
    class: String,
    status_code: Option<u16>,
    error: Option<String>,
    response_snippet: String,
    attempts_made: u32,
    attempts: Vec<Attempt>,
    dead_lettered_at: String,
    replays: u32,
}

#[derive(ToSchema)]
pub struct DeadLetterPage {
    data: Vec<DeadLetter>,
    next: Option<String>,
}

/// A delivery id.
#[derive(ToSchema)]
#[schema(as = DeliveryId, pattern = "^dlv_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
pub struct DeliveryIdDoc(String);

/// A dead-letter filter; every field given must match.
#[derive(ToSchema)]
pub struct DeadLetterFilter {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    tenant: Option<String>,
    #[schema(pattern = "^ep_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    endpoint_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    event_type: Option<String>,
    class: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Words the reason contains, ignoring case.
    #[schema(min_length = 1, max_length = 200)]
    reason: Option<String>,
}

/// `POST /v1/batches`: `delivery_ids` or `filter`, not both.
#[derive(ToSchema)]
pub struct BatchCreate {
    #[schema(min_items = 1, max_items = 10000, inline)]
    delivery_ids: Option<Vec<DeliveryIdDoc>>,
    filter: Option<DeadLetterFilter>,
    dry_run: Option<bool>,
    allow_repeat: Option<bool>,
}

/// The optional body of `POST /v1/deliveries/{id}/resend`.
#[derive(ToSchema)]
pub struct Resend {
    dry_run: Option<bool>,
    allow_repeat: Option<bool>,
}

/// `POST /v1/endpoints/{id}/recover`.
#[derive(ToSchema)]
pub struct Recover {
    /// RFC 3339: replay what died since then.
    since: String,
    dry_run: Option<bool>,
    allow_repeat: Option<bool>,
}

#[derive(ToSchema)]
pub struct Batch {
    id: String,
    /// `running`, `completed`, `cancelled` or `failed`.
    status: String,
    dry_run: bool,
    allow_repeat: bool,
    created_by: String,
    tenant: Option<String>,
    /// `{"delivery_ids": [...]}` or `{"filter": {...}}`.
    selection: Value,
    counts: Value,
    error: Option<String>,
    created_at: String,
    updated_at: String,
    finished_at: Option<String>,
    /// A dry run: how many would be replayed, and each item it would take.
    count: Option<u32>,
    items: Option<Vec<Value>>,
}

#[derive(ToSchema)]
pub struct BatchPage {
    data: Vec<Batch>,
    next: Option<String>,
}

#[derive(ToSchema)]
pub struct BatchItemPage {
    /// `position`, `dead_delivery_id`, `endpoint_id`, `outcome` and, by outcome,
    /// `delivery_id`, `published` or `reason`.
    data: Vec<Value>,
    next: Option<String>,
}

/// `POST /v1/tenants/{tenant}/api-keys`.
#[derive(ToSchema)]
pub struct ApiKeyCreate {
    #[schema(max_length = 100)]
    name: Option<String>,
}

#[derive(ToSchema)]
pub struct ApiKey {
    id: String,
    tenant: String,
    name: String,
    created_at: String,
    revoked_at: Option<String>,
    /// The key itself: only in the answer that creates it.
    key: Option<String>,
}

#[derive(ToSchema)]
pub struct ApiKeyList {
    data: Vec<ApiKey>,
}
