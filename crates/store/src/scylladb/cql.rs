//! The CQL the ScyllaDB store runs, the TTLs it writes with and the day buckets of its
//! time-partitioned tables: plain values, unit-tested without a server.

use std::time::Duration;

use time::OffsetDateTime;

/// Every migration, oldest first. Append only: an applied migration is never edited.
pub(super) const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../../../../schemas/store/cql/0001_init.cql"),
    ),
    (
        2,
        include_str!("../../../../schemas/store/cql/0002_replay.cql"),
    ),
    (
        3,
        include_str!("../../../../schemas/store/cql/0003_secret_rotation.cql"),
    ),
    (
        4,
        include_str!("../../../../schemas/store/cql/0004_tenant_access.cql"),
    ),
    (
        5,
        include_str!("../../../../schemas/store/cql/0005_attempt_claims.cql"),
    ),
    (
        6,
        include_str!("../../../../schemas/store/cql/0006_atomic_intake.cql"),
    ),
    (
        7,
        include_str!("../../../../schemas/store/cql/0007_tenant_dead_letters.cql"),
    ),
    (
        8,
        include_str!("../../../../schemas/store/cql/0008_shaping.cql"),
    ),
    (
        9,
        include_str!("../../../../schemas/store/cql/0009_ordered_queues.cql"),
    ),
    (
        10,
        include_str!("../../../../schemas/store/cql/0010_endpoint_health.cql"),
    ),
    (
        11,
        include_str!("../../../../schemas/store/cql/0011_traffic_reports.cql"),
    ),
    (
        12,
        include_str!("../../../../schemas/store/cql/0012_portal_link_revocations.cql"),
    ),
];

/// The statements of a migration file: `;`-terminated, comments (`--`) dropped.
pub(super) fn statements_of(script: &str) -> Vec<String> {
    let without_comments: String = script
        .lines()
        .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The table and column of an `ALTER TABLE t ADD c type` statement.
pub(super) fn added_column(statement: &str) -> Option<(&str, &str)> {
    let mut words = statement.split_whitespace();
    let is_alter =
        words.next()?.eq_ignore_ascii_case("ALTER") && words.next()?.eq_ignore_ascii_case("TABLE");
    let table = words.next()?;
    let is_add = words.next()?.eq_ignore_ascii_case("ADD");
    (is_alter && is_add).then_some((table, words.next()?))
}

/// The outbox is spread over this many partitions, so no one partition takes every event.
pub(super) const OUTBOX_SHARDS: i32 = 16;

/// Which outbox partition an event's row goes to (stable for an id).
pub(super) fn outbox_shard(event_id: &str) -> i32 {
    // FNV-1a: stable across processes and versions, unlike the std hasher.
    let hash = event_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % OUTBOX_SHARDS as u64) as i32
}

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// The UTC hour (hours since 1970-01-01) a time falls in: the bucket of the outbox.
pub(super) fn hour_of(at: OffsetDateTime) -> i32 {
    i32::try_from(crate::raw::millis(at).div_euclid(HOUR_MS)).unwrap_or(i32::MAX)
}

/// The UTC day (days since 1970-01-01) a time falls in: the bucket of day-partitioned tables.
pub(super) fn day_of_millis(ms: i64) -> i32 {
    i32::try_from(ms.div_euclid(DAY_MS)).unwrap_or(i32::MAX)
}

pub(super) fn day_of(at: OffsetDateTime) -> i32 {
    day_of_millis(crate::raw::millis(at))
}

/// A TTL in whole seconds as CQL takes it: at least 1 (0 would mean "never expires") and at
/// most CQL's limit of 20 years.
pub(super) fn ttl_seconds(ttl: Duration) -> i32 {
    const MAX_TTL: u64 = 20 * 365 * 86_400;
    ttl.as_secs().clamp(1, MAX_TTL) as i32
}

pub(super) const ENDPOINT_COLUMNS: &str = "id, tenant, url, event_types, secret, disabled, created_at, updated_at, \
     max_attempts, paused, circuit_state, circuit_open_until, shaping";
pub(super) const EVENT_COLUMNS: &str =
    "id, tenant, event_type, payload, idempotency_key, created_at, publish_state, request_id";
pub(super) const DELIVERY_COLUMNS: &str = "id, event_id, endpoint_id, tenant, event_type, status, attempts, created_at, \
     updated_at, next_attempt_at, next_tier";
pub(super) const ATTEMPT_COLUMNS: &str = "delivery_id, number, started_at, latency_ms, status_code, class, \
     response_snippet, error, next_attempt_at, tier";

pub(super) fn insert_endpoint() -> String {
    format!(
        "INSERT INTO endpoints ({ENDPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
}
pub(super) const INSERT_ENDPOINT_OF_TENANT: &str =
    "INSERT INTO endpoints_by_tenant (tenant, id) VALUES (?, ?)";
pub(super) fn select_endpoint() -> String {
    format!(
        "SELECT {ENDPOINT_COLUMNS}, previous_secret, previous_secret_expires_at, deleted_at \
         FROM endpoints WHERE id = ?"
    )
}
pub(super) const SELECT_ENDPOINT_IDS_OF_TENANT: &str =
    "SELECT id FROM endpoints_by_tenant WHERE tenant = ? AND id > ? LIMIT ?";
/// Only a live endpoint is changed: the condition keeps a deleted one deleted.
pub(super) const UPDATE_ENDPOINT: &str = "UPDATE endpoints SET url = ?, event_types = ?, disabled = ?, updated_at = ?, \
     max_attempts = ?, paused = ?, shaping = ? WHERE id = ? IF deleted_at = null";
/// Changes the given columns of a live endpoint (the others are bound unset, so they keep what
/// any other writer gave them). The tenant condition keeps a missing row from being created.
pub(super) const CHANGE_ENDPOINT: &str = "UPDATE endpoints SET url = ?, event_types = ?, disabled = ?, updated_at = ?, \
     max_attempts = ?, paused = ?, shaping = ? WHERE id = ? IF deleted_at = null AND tenant = ?";
/// As [`CHANGE_ENDPOINT`], also changing the delivery settings document, which is written whole:
/// only if it is still the one the change was made to, so two changes of different settings
/// made side by side are both kept (the loser reads again).
pub(super) const CHANGE_ENDPOINT_SHAPING: &str = "UPDATE endpoints SET url = ?, event_types = ?, disabled = ?, updated_at = ?, \
     max_attempts = ?, paused = ?, shaping = ? WHERE id = ? IF deleted_at = null AND tenant = ? AND shaping = ?";
pub(super) const SELECT_SHAPING: &str =
    "SELECT tenant, shaping, deleted_at FROM endpoints WHERE id = ?";
/// Disables a live endpoint and touches nothing else: an edit made meanwhile stays.
pub(super) const DISABLE_ENDPOINT: &str = "UPDATE endpoints SET disabled = true, updated_at = ? WHERE id = ? IF deleted_at = null AND disabled = false";
pub(super) const SELECT_ENDPOINT_TENANT: &str = "SELECT tenant FROM endpoints WHERE id = ?";
pub(super) const SELECT_SUBSCRIBER: &str =
    "SELECT event_types, disabled, deleted_at FROM endpoints WHERE id = ?";
pub(super) const SELECT_SECRET: &str = "SELECT secret, deleted_at FROM endpoints WHERE id = ?";
/// Rotates a live endpoint's secret, if nobody rotated it since it was read.
pub(super) const ROTATE_SECRET: &str = "UPDATE endpoints SET secret = ?, previous_secret = ?, \
     previous_secret_expires_at = ?, updated_at = ? WHERE id = ? IF secret = ? AND deleted_at = null";
pub(super) const DELETE_ENDPOINT: &str =
    "UPDATE endpoints SET deleted_at = ?, updated_at = ? WHERE id = ? IF deleted_at = null";
pub(super) const SET_CIRCUIT: &str =
    "UPDATE endpoints SET circuit_state = ?, circuit_open_until = ? WHERE id = ?";

/// Claims an idempotency key for the window: exactly one of racing writers gets `[applied]`.
pub(super) const CLAIM_KEY: &str = "INSERT INTO idempotency_keys (tenant, key, event_id, expires_at) VALUES (?, ?, ?, ?) \
     IF NOT EXISTS USING TTL ?";
/// Takes over a key whose window has passed but whose row has not expired yet (clock skew).
pub(super) const RECLAIM_KEY: &str = "UPDATE idempotency_keys USING TTL ? SET event_id = ?, expires_at = ? \
     WHERE tenant = ? AND key = ? IF event_id = ?";
pub(super) const SELECT_KEY: &str =
    "SELECT event_id, expires_at FROM idempotency_keys WHERE tenant = ? AND key = ?";

pub(super) fn insert_event() -> String {
    format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?")
}
pub(super) const DELETE_EVENT: &str = "DELETE FROM events WHERE id = ?";
pub(super) fn select_event() -> String {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?")
}
pub(super) const MARK_PUBLISHED: &str =
    "UPDATE events USING TTL ? SET publish_state = 'published' WHERE id = ?";
/// Sets an event's publish state (`publishing` once its request is committed, `set_aside`).
pub(super) const SET_EVENT_STATE: &str =
    "UPDATE events USING TTL ? SET publish_state = ?, set_aside_reason = ? WHERE id = ?";
/// Decides a request once: exactly one of `committed` (by the request) and `abandoned` (by
/// whoever gives up on it) is applied.
pub(super) const DECIDE_REQUEST: &str =
    "INSERT INTO intake_requests (id, verdict) VALUES (?, ?) IF NOT EXISTS USING TTL ?";
pub(super) const SELECT_REQUEST: &str = "SELECT verdict FROM intake_requests WHERE id = ?";
/// Gives an abandoned event's key back, unless another event took it over meanwhile.
pub(super) const RELEASE_KEY: &str =
    "DELETE FROM idempotency_keys WHERE tenant = ? AND key = ? IF event_id = ?";
pub(super) const INSERT_OUTBOX: &str = "INSERT INTO outbox (shard, hour, created_at, event_id) \
     VALUES (?, ?, ?, ?) USING TTL ?";
pub(super) const DELETE_OUTBOX: &str =
    "DELETE FROM outbox WHERE shard = ? AND hour = ? AND created_at = ? AND event_id = ?";
pub(super) const SELECT_OUTBOX: &str = "SELECT created_at, event_id FROM outbox \
     WHERE shard = ? AND hour = ? AND created_at < ? LIMIT ?";
/// The outbox of versions before issue 19 (one partition per shard), drained after an upgrade.
pub(super) const DELETE_UNPUBLISHED: &str =
    "DELETE FROM unpublished_events WHERE shard = ? AND created_at = ? AND event_id = ?";
pub(super) const SELECT_UNPUBLISHED: &str = "SELECT created_at, event_id FROM unpublished_events WHERE shard = ? AND created_at < ? LIMIT ?";

/// Writes a delivery row. An UPDATE, not an INSERT: it writes no row marker, so the row lives
/// exactly as long as its cells. A delivery under way is written with TTL 0 (none) and a final
/// one with the retention, so an unfinished delivery outlives the retention (issue 18, item 5).
pub(super) const WRITE_DELIVERY: &str = "UPDATE deliveries USING TTL ? SET event_id = ?, endpoint_id = ?, \
     tenant = ?, event_type = ?, status = ?, attempts = ?, created_at = ?, updated_at = ?, \
     next_attempt_at = ?, next_tier = ? WHERE id = ?";
pub(super) const DELETE_DELIVERY: &str = "DELETE FROM deliveries WHERE id = ?";
pub(super) fn select_delivery() -> String {
    format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?")
}
pub(super) const INSERT_DELIVERY_OF_EVENT: &str =
    "INSERT INTO deliveries_by_event (event_id, id) VALUES (?, ?) USING TTL ?";
pub(super) const INSERT_DELIVERY_OF_ENDPOINT: &str =
    "INSERT INTO deliveries_by_endpoint (endpoint_id, day, id) VALUES (?, ?, ?) USING TTL ?";
pub(super) const INSERT_DELIVERY_OF_TENANT: &str =
    "INSERT INTO deliveries_by_tenant (tenant, day, id) VALUES (?, ?, ?) USING TTL ?";
pub(super) const SELECT_DELIVERY_IDS_OF_EVENT: &str =
    "SELECT id FROM deliveries_by_event WHERE event_id = ? AND id > ? LIMIT ?";
pub(super) const SELECT_DELIVERY_IDS_OF_ENDPOINT: &str =
    "SELECT id FROM deliveries_by_endpoint WHERE endpoint_id = ? AND day = ? AND id > ? LIMIT ?";
pub(super) const SELECT_DELIVERY_IDS_OF_TENANT: &str =
    "SELECT id FROM deliveries_by_tenant WHERE tenant = ? AND day = ? AND id > ? LIMIT ?";
pub(super) fn select_delivery_with_claim() -> String {
    format!("SELECT {DELIVERY_COLUMNS}, claim_token, claim_until FROM deliveries WHERE id = ?")
}
/// Takes an attempt's claim, if the row is still as it was read (status, count and claim).
pub(super) const CLAIM_ATTEMPT: &str = "UPDATE deliveries USING TTL ? SET status = 'delivering', updated_at = ?, \
     claim_token = ?, claim_until = ? WHERE id = ? IF status = ? AND attempts = ? AND claim_token = ?";
/// Ends a claim's lease early, if it is still the claim in force and its attempt unrecorded.
pub(super) const RELEASE_CLAIM: &str =
    "UPDATE deliveries SET claim_until = null WHERE id = ? IF claim_token = ? AND attempts = ?";
/// Counts a claimed attempt and sets the status, only for the claim in force.
pub(super) const COUNT_ATTEMPT: &str = "UPDATE deliveries USING TTL ? SET attempts = ?, status = ?, updated_at = ?, \
     next_attempt_at = ?, next_tier = ?, claim_until = null WHERE id = ? IF claim_token = ? AND attempts = ?";
/// Counts a claimed attempt that ends the delivery: every cell of the row is written again with
/// the retention as its TTL, so the whole row expires (cells written under way have none).
pub(super) const FINISH_ATTEMPT: &str = "UPDATE deliveries USING TTL ? SET event_id = ?, endpoint_id = ?, \
     tenant = ?, event_type = ?, created_at = ?, attempts = ?, status = ?, updated_at = ?, \
     next_attempt_at = ?, next_tier = ?, claim_token = ?, claim_until = null \
     WHERE id = ? IF claim_token = ? AND attempts = ?";
pub(super) fn insert_attempt() -> String {
    format!(
        "INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
    )
}
pub(super) fn select_attempts() -> String {
    format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = ?")
}

pub(super) const SELECT_CONTROL: &str = "SELECT value FROM control WHERE name = ?";
pub(super) const UPSERT_ENDPOINT_HEALTH: &str =
    "INSERT INTO endpoint_health (endpoint_id, health, updated_at) VALUES (?, ?, ?)";
pub(super) const SELECT_ENDPOINT_HEALTH: &str =
    "SELECT health FROM endpoint_health WHERE endpoint_id = ?";
pub(super) const INSERT_PORTAL_LINK_REVOCATION: &str = "INSERT INTO portal_link_revocations \
     (link_id, tenant, revoked_at) VALUES (?, ?, ?) USING TTL ?";
pub(super) const SELECT_PORTAL_LINK_REVOCATION: &str =
    "SELECT revoked_at FROM portal_link_revocations WHERE link_id = ?";
pub(super) const UPSERT_TRAFFIC_REPORT: &str = "INSERT INTO traffic_reports \
     (minute, reporter, attempts, succeeded, open_breakers, more_breakers, written_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";
pub(super) const SELECT_TRAFFIC_REPORTS: &str = "SELECT reporter, attempts, succeeded, \
     open_breakers, more_breakers, written_at FROM traffic_reports WHERE minute = ?";
pub(super) const UPSERT_CONTROL: &str =
    "INSERT INTO control (name, value, updated_at) VALUES (?, ?, ?)";

// Replay: the dead-letter index and batches.
pub(super) const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letter_index \
     (delivery_id, letter, dead_at, replays) VALUES (?, ?, ?, 0) IF NOT EXISTS USING TTL ?";
pub(super) const INSERT_DEAD_LETTER_OF_DAY: &str = "INSERT INTO dead_letters_by_day \
     (day, dead_at, delivery_id, endpoint_id, tenant, event_type, class) \
     VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?";
pub(super) const INSERT_DEAD_LETTER_OF_TENANT_DAY: &str = "INSERT INTO dead_letters_by_tenant_day \
     (tenant, day, dead_at, delivery_id, endpoint_id, event_type, class) \
     VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?";
pub(super) const SELECT_DEAD_LETTERS_OF_TENANT_DAY: &str = "SELECT dead_at, delivery_id, \
     endpoint_id, tenant, event_type, class FROM dead_letters_by_tenant_day \
     WHERE tenant = ? AND day = ? AND (dead_at, delivery_id) > (?, ?) LIMIT ?";
/// Records a value once: the first writer's stays.
pub(super) const INSERT_CONTROL_ONCE: &str =
    "INSERT INTO control (name, value, updated_at) VALUES (?, ?, ?) IF NOT EXISTS";
pub(super) const SELECT_DEAD_LETTER: &str = "SELECT letter, replays, last_claim, last_claim_delivery \
     FROM dead_letter_index WHERE delivery_id = ?";
pub(super) const SELECT_DEAD_LETTERS_OF_DAY: &str = "SELECT dead_at, delivery_id, endpoint_id, \
     tenant, event_type, class FROM dead_letters_by_day \
     WHERE day = ? AND (dead_at, delivery_id) > (?, ?) LIMIT ?";
/// Claims a dead letter for one batch item: applies only if nobody claimed it since it was read.
pub(super) const CLAIM_DEAD_LETTER: &str = "UPDATE dead_letter_index USING TTL ? \
     SET replays = ?, last_claim = ?, last_claim_delivery = ? WHERE delivery_id = ? IF replays = ?";
pub(super) const INSERT_BATCH: &str = "INSERT INTO batches (id, created_by, selection, dry_run, \
     allow_repeat, status, error, created_at, updated_at, finished_at, tenant) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?";
pub(super) const SELECT_BATCH: &str = "SELECT id, created_by, selection, dry_run, allow_repeat, \
     status, error, created_at, updated_at, finished_at, tenant FROM batches WHERE id = ?";
pub(super) const INSERT_BATCH_ID: &str =
    "INSERT INTO batch_ids (shard, id) VALUES (0, ?) USING TTL ?";
pub(super) const SELECT_BATCH_IDS: &str =
    "SELECT id FROM batch_ids WHERE shard = 0 AND id < ? LIMIT ?";
pub(super) const INSERT_BATCH_ID_OF_TENANT: &str =
    "INSERT INTO batch_ids_of_tenant (tenant, id) VALUES (?, ?) USING TTL ?";
pub(super) const SELECT_BATCH_IDS_OF_TENANT: &str =
    "SELECT id FROM batch_ids_of_tenant WHERE tenant = ? AND id < ? LIMIT ?";
pub(super) const INSERT_RUNNING: &str = "INSERT INTO running_batches (shard, id) VALUES (0, ?)";
pub(super) const DELETE_RUNNING: &str = "DELETE FROM running_batches WHERE shard = 0 AND id = ?";
pub(super) const SELECT_RUNNING: &str = "SELECT id FROM running_batches WHERE shard = 0";
/// Ends a running batch; a batch that already ended keeps its status.
pub(super) const FINISH_BATCH: &str = "UPDATE batches USING TTL ? \
     SET status = ?, error = ?, updated_at = ?, finished_at = ? WHERE id = ? IF status = 'running'";
pub(super) const TOUCH_BATCH: &str = "UPDATE batches USING TTL ? SET updated_at = ? WHERE id = ?";
pub(super) const INSERT_ITEM: &str = "INSERT INTO batch_items (batch_id, position, \
     dead_delivery_id, endpoint_id, outcome, skip_reason, delivery_id, published) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?";
pub(super) const SELECT_ITEMS: &str = "SELECT batch_id, position, dead_delivery_id, endpoint_id, \
     outcome, skip_reason, delivery_id, published FROM batch_items \
     WHERE batch_id = ? AND position > ? LIMIT ?";
pub(super) const SELECT_ITEM: &str = "SELECT batch_id, position, dead_delivery_id, endpoint_id, \
     outcome, skip_reason, delivery_id, published FROM batch_items \
     WHERE batch_id = ? AND position = ?";
/// Decides a pending item; applies only if no other runner decided it first.
pub(super) const DECIDE_ITEM: &str = "UPDATE batch_items USING TTL ? \
     SET outcome = ?, skip_reason = ?, delivery_id = ? \
     WHERE batch_id = ? AND position = ? IF outcome = 'pending'";
pub(super) const PUBLISH_ITEM: &str = "UPDATE batch_items USING TTL ? SET published = true \
     WHERE batch_id = ? AND position = ?";

// Tenant API keys.
pub(super) const INSERT_API_KEY: &str = "INSERT INTO api_keys (id, tenant, name, key_hash, \
     created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)";
pub(super) const INSERT_API_KEY_OF_TENANT: &str =
    "INSERT INTO api_keys_of_tenant (tenant, id) VALUES (?, ?)";
pub(super) const SELECT_API_KEY: &str = "SELECT id, tenant, name, key_hash, created_at, revoked_at \
     FROM api_keys WHERE id = ?";
pub(super) const SELECT_API_KEY_IDS_OF_TENANT: &str =
    "SELECT id FROM api_keys_of_tenant WHERE tenant = ?";
/// Revokes a key once: a key revoked already keeps its first revocation time.
pub(super) const REVOKE_API_KEY: &str =
    "UPDATE api_keys SET revoked_at = ? WHERE id = ? IF revoked_at = null";

// Strict ordering's queues.
pub(super) const INSERT_QUEUED: &str =
    "INSERT INTO ordered_queue (endpoint_id, position, partition, task) VALUES (?, ?, ?, ?)";
pub(super) const SELECT_QUEUE_HEAD: &str = "SELECT endpoint_id, position, partition, task \
     FROM ordered_queue WHERE endpoint_id = ? AND position > ? LIMIT 1";
pub(super) const DELETE_QUEUED: &str =
    "DELETE FROM ordered_queue WHERE endpoint_id = ? AND position = ?";
pub(super) const INSERT_QUEUED_ENDPOINT: &str =
    "INSERT INTO ordered_endpoints (partition, endpoint_id) VALUES (?, ?)";
pub(super) const SELECT_QUEUED_ENDPOINTS: &str =
    "SELECT endpoint_id FROM ordered_endpoints WHERE partition = ?";
pub(super) const SELECT_QUEUE_PROGRESS: &str =
    "SELECT last_removed FROM ordered_endpoints WHERE partition = ? AND endpoint_id = ?";
pub(super) const UPDATE_QUEUE_PROGRESS: &str =
    "UPDATE ordered_endpoints SET last_removed = ? WHERE partition = ? AND endpoint_id = ?";
pub(super) const DELETE_QUEUED_ENDPOINT: &str =
    "DELETE FROM ordered_endpoints WHERE partition = ? AND endpoint_id = ?";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_splits_into_idempotent_statements() {
        let statements = statements_of(MIGRATIONS[0].1);
        assert!(statements.len() >= 12, "{statements:?}");
        let replay = statements_of(MIGRATIONS[1].1);
        assert_eq!(replay.len(), 6, "{replay:?}");
        for statement in statements.iter().chain(&replay) {
            assert!(
                statement.starts_with("CREATE TABLE IF NOT EXISTS"),
                "not idempotent: {statement}"
            );
            assert!(!statement.contains("--"), "comment left in: {statement}");
        }
    }

    #[test]
    fn added_columns_are_found_so_a_rerun_skips_them() {
        let statements = statements_of(MIGRATIONS[2].1);
        assert_eq!(statements.len(), 2);
        assert_eq!(
            added_column(&statements[0]),
            Some(("endpoints", "previous_secret"))
        );
        assert_eq!(
            added_column(&statements[1]),
            Some(("endpoints", "previous_secret_expires_at"))
        );
        assert_eq!(added_column("CREATE TABLE IF NOT EXISTS x (a int)"), None);
        let access = statements_of(MIGRATIONS[3].1);
        assert_eq!(access.len(), 4, "{access:?}");
        assert_eq!(added_column(&access[2]), Some(("batches", "tenant")));
    }

    #[test]
    fn days_are_utc_days_since_the_epoch() {
        assert_eq!(day_of_millis(0), 0);
        assert_eq!(day_of_millis(DAY_MS - 1), 0);
        assert_eq!(day_of_millis(DAY_MS), 1);
        assert_eq!(day_of_millis(-1), -1, "before 1970 rounds down, not to 0");
        let at = OffsetDateTime::from_unix_timestamp(1_795_392_000).unwrap(); // 2026-11-23 00:00 UTC
        assert_eq!(day_of(at), 20_780);
        assert_eq!(day_of(at + time::Duration::hours(23)), 20_780);
        assert_eq!(day_of(at + time::Duration::hours(24)), 20_781);
    }

    #[test]
    fn hours_are_utc_hours_since_the_epoch() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_392_000).unwrap(); // 2026-11-23 00:00 UTC
        assert_eq!(hour_of(at), 498_720);
        assert_eq!(hour_of(at + time::Duration::minutes(59)), 498_720);
        assert_eq!(hour_of(at + time::Duration::minutes(60)), 498_721);
    }

    #[test]
    fn ttls_are_whole_seconds_within_cql_limits() {
        assert_eq!(ttl_seconds(Duration::from_secs(72 * 3600)), 259_200);
        assert_eq!(ttl_seconds(Duration::from_secs(30 * 86_400)), 2_592_000);
        assert_eq!(
            ttl_seconds(Duration::from_millis(10)),
            1,
            "0 would never expire"
        );
        assert_eq!(ttl_seconds(Duration::from_secs(u64::MAX)), 630_720_000);
    }

    #[test]
    fn outbox_shards_are_stable_and_in_range() {
        assert_eq!(
            outbox_shard("evt_01M83QM91S06C5Z1ER2424DN4D"),
            outbox_shard("evt_01M83QM91S06C5Z1ER2424DN4D")
        );
        let shards: std::collections::HashSet<i32> = (0..200)
            .map(|i| outbox_shard(&format!("evt_{i}")))
            .collect();
        assert!(shards.iter().all(|s| (0..OUTBOX_SHARDS).contains(s)));
        assert!(
            shards.len() > OUTBOX_SHARDS as usize / 2,
            "spread: {shards:?}"
        );
    }

    #[test]
    fn growing_tables_are_written_with_a_ttl_and_races_use_lightweight_transactions() {
        for statement in [
            insert_event(),
            WRITE_DELIVERY.to_owned(),
            insert_attempt(),
            INSERT_DELIVERY_OF_EVENT.to_owned(),
            INSERT_DELIVERY_OF_ENDPOINT.to_owned(),
            INSERT_DELIVERY_OF_TENANT.to_owned(),
            INSERT_OUTBOX.to_owned(),
            SET_EVENT_STATE.to_owned(),
            DECIDE_REQUEST.to_owned(),
            CLAIM_KEY.to_owned(),
            RECLAIM_KEY.to_owned(),
            CLAIM_ATTEMPT.to_owned(),
            COUNT_ATTEMPT.to_owned(),
            FINISH_ATTEMPT.to_owned(),
            MARK_PUBLISHED.to_owned(),
            INSERT_DEAD_LETTER.to_owned(),
            INSERT_DEAD_LETTER_OF_DAY.to_owned(),
            INSERT_DEAD_LETTER_OF_TENANT_DAY.to_owned(),
            CLAIM_DEAD_LETTER.to_owned(),
            INSERT_BATCH.to_owned(),
            INSERT_BATCH_ID.to_owned(),
            FINISH_BATCH.to_owned(),
            TOUCH_BATCH.to_owned(),
            INSERT_ITEM.to_owned(),
            DECIDE_ITEM.to_owned(),
            PUBLISH_ITEM.to_owned(),
        ] {
            assert!(statement.contains("USING TTL ?"), "no TTL: {statement}");
        }
        assert!(CLAIM_KEY.contains("IF NOT EXISTS"));
        assert!(
            DECIDE_REQUEST.contains("IF NOT EXISTS"),
            "a request is committed or abandoned, never both"
        );
        assert!(
            WRITE_DELIVERY.starts_with("UPDATE "),
            "an INSERT's row marker would outlive a final row's TTL"
        );
        assert!(
            INSERT_DEAD_LETTER.contains("IF NOT EXISTS"),
            "a re-read keeps the replay count"
        );
        for conditional in [
            RECLAIM_KEY,
            CLAIM_ATTEMPT,
            RELEASE_CLAIM,
            COUNT_ATTEMPT,
            FINISH_ATTEMPT,
            UPDATE_ENDPOINT,
            CHANGE_ENDPOINT,
            CHANGE_ENDPOINT_SHAPING,
            DISABLE_ENDPOINT,
            DELETE_ENDPOINT,
            ROTATE_SECRET,
            CLAIM_DEAD_LETTER,
            FINISH_BATCH,
            DECIDE_ITEM,
            RELEASE_KEY,
        ] {
            assert!(
                conditional.contains(" IF "),
                "not conditional: {conditional}"
            );
        }
    }
}
