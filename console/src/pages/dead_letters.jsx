// Dead letters: find them, plan a replay with a dry run, start it and watch it (or cancel it).
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { Chip, ErrorBox, Id, Pager, Time, toRfc3339, useAction, useLoad, usePaged } from '../components.jsx';
import { FilterForm } from './deliveries.jsx';

const CLASSES = [
  'HTTP_5XX_RETRYABLE', 'HTTP_4XX_PERMANENT', 'HTTP_4XX_RETRYABLE', 'RATE_LIMITED', 'GONE',
  'REDIRECT', 'TIMEOUT', 'NETWORK_ERROR', 'TLS_ERROR', 'DNS_ERROR', 'DESTINATION_BLOCKED',
  'ENDPOINT_UNAVAILABLE',
];

/** The API's filter from the page's query (times typed in the viewer's zone). */
function apiFilter(query, tenant) {
  const filter = {
    tenant: tenant || undefined,
    endpoint_id: query.endpoint_id,
    event_type: query.event_type,
    class: query.class,
    reason: query.reason,
    since: toRfc3339(query.since),
    until: toRfc3339(query.until),
  };
  return Object.fromEntries(Object.entries(filter).filter(([, v]) => v));
}

/** The plan of a replay: how many would be sent, then the real start, confirmed with the count. */
function ReplayPlanner({ selection, onCancel }) {
  const [plan, setPlan] = useState(null);
  const action = useAction();
  useEffect(() => {
    setPlan(null);
    action.run(async () => setPlan(await api('POST', '/v1/batches', { ...selection, dry_run: true })));
  }, [JSON.stringify(selection)]);
  const start = async () => {
    const count = plan.count;
    if (!window.confirm(`Replay ${count} dead letter${count === 1 ? '' : 's'}? They are sent to their endpoints again.`)) return;
    // What the dry run saw, not what died since: a filter is held to the dry run's time.
    const confirmed = selection.filter
      ? { filter: { ...selection.filter, until: selection.filter.until ?? plan.created_at } }
      : selection;
    const batch = await action.run(() => api('POST', '/v1/batches', confirmed));
    if (batch?.id) window.location.hash = `#/batches/${batch.id}`;
  };
  return (
    <div class="planner" role="region" aria-label="Replay plan">
      <h2>Dry run</h2>
      <ErrorBox error={action.error} />
      {plan ? (
        <>
          <p><strong class="plan-count">{plan.count}</strong> would be sent again
            {plan.counts?.skipped ? `, ${plan.counts.skipped} skipped` : ''}
            {Object.entries(plan.counts?.skipped_by_reason ?? {}).map(([reason, n]) => ` (${reason}: ${n})`)}.</p>
          <button type="button" onClick={start} disabled={action.running || plan.count === 0}>
            Replay {plan.count}
          </button>{' '}
          <button type="button" onClick={onCancel}>Close</button>
        </>
      ) : <p class="muted">Planning…</p>}
    </div>
  );
}

export function DeadLetters({ route, isAdmin, tenant }) {
  const query = route.query;
  const scope = isAdmin && tenant ? tenant : undefined;
  const filter = apiFilter(query, scope);
  const paged = usePaged('/v1/dead-letters', filter);
  const [selected, setSelected] = useState(new Set());
  const [selection, setSelection] = useState(null);
  useEffect(() => setSelected(new Set()), [JSON.stringify(filter)]);
  const toggle = (id) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id); else next.add(id);
    setSelected(next);
  };
  return (
    <section>
      <h1>Dead letters</h1>
      <FilterForm page="dead-letters" query={query} label="Filter dead letters" fields={[
        { name: 'endpoint_id', title: 'Endpoint', placeholder: 'ep_…' },
        { name: 'event_type', title: 'Event type' },
        { name: 'class', title: 'Class', options: CLASSES },
        { name: 'reason', title: 'Reason contains', placeholder: 'gave up' },
        { name: 'since', title: 'Since', type: 'datetime-local' },
        { name: 'until', title: 'Until', type: 'datetime-local' },
      ]} />
      <p class="actions">
        <button type="button" disabled={selected.size === 0}
          onClick={() => setSelection({ delivery_ids: [...selected] })}>
          Dry run: {selected.size} selected
        </button>{' '}
        <button type="button" onClick={() => setSelection({ filter })}>Dry run: all matching the filter</button>
      </p>
      {selection ? <ReplayPlanner selection={selection} onCancel={() => setSelection(null)} /> : null}
      <ErrorBox error={paged.error} />
      <table>
        <thead>
          <tr><th><span class="visually-hidden">Select</span></th><th>Delivery</th><th>Event type</th><th>Endpoint</th>
            <th>Reason</th><th>Class</th><th>Died</th><th>Replays</th></tr>
        </thead>
        <tbody>
          {paged.items.map((d) => (
            <tr key={d.delivery_id}>
              <td><input type="checkbox" checked={selected.has(d.delivery_id)}
                aria-label={`Select ${d.delivery_id}`} onChange={() => toggle(d.delivery_id)} /></td>
              <td><Id value={d.delivery_id} href={`#/deliveries/${d.delivery_id}`} /></td>
              <td>{d.event?.type}</td>
              <td><Id value={d.endpoint?.id} href={`#/endpoints/${d.endpoint?.id}`} />
                {d.endpoint?.deleted ? <Chip kind="bad">deleted</Chip> : null}</td>
              <td>{d.reason}</td>
              <td><Chip kind="bad">{d.class}</Chip>{d.status_code ? ` ${d.status_code}` : ''}</td>
              <td><Time value={d.dead_lettered_at} /></td>
              <td>{Array.isArray(d.replays) ? d.replays.length : d.replays ?? 0}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!paged.loading && paged.items.length === 0
        ? <p class="muted">{paged.next ? 'None on this page; the search goes on: Next →' : 'No dead letters match.'}</p>
        : null}
      <Pager paged={paged} label="Dead letters" />
      <h2>Recent batches</h2>
      <BatchList tenant={scope} />
    </section>
  );
}

const FINISHED = ['completed', 'cancelled', 'failed'];

function BatchList({ tenant }) {
  const paged = usePaged('/v1/batches', tenant ? { tenant } : {});
  return (
    <>
      <ErrorBox error={paged.error} />
      <table>
        <thead><tr><th>Batch</th><th>Status</th><th>Dry run</th><th>Matched</th><th>Created</th><th>By</th></tr></thead>
        <tbody>
          {paged.items.map((b) => (
            <tr key={b.id}>
              <td><Id value={b.id} href={`#/batches/${b.id}`} /></td>
              <td><Chip kind={b.status === 'completed' ? 'good' : b.status === 'failed' ? 'bad' : 'neutral'}>{b.status}</Chip></td>
              <td>{b.dry_run ? 'yes' : 'no'}</td>
              <td>{b.counts?.matched}</td>
              <td><Time value={b.created_at} /></td>
              <td>{b.created_by}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Pager paged={paged} label="Batches" />
    </>
  );
}

/** One batch, refreshed every second until it finishes; cancel while it runs. */
export function BatchDetail({ id }) {
  const batch = useLoad(`/v1/batches/${id}`);
  const items = usePaged(`/v1/batches/${id}/items`, {});
  const action = useAction();
  const running = batch.data && !FINISHED.includes(batch.data.status) && !batch.data.dry_run;
  useEffect(() => {
    if (!running) return undefined;
    const timer = setInterval(() => { batch.reload(); items.reload(); }, 1000);
    return () => clearInterval(timer);
  }, [running]);
  const cancel = async () => {
    if (!window.confirm('Cancel this batch? What it has sent stays sent.')) return;
    await action.run(() => api('POST', `/v1/batches/${id}/cancel`));
    batch.reload();
  };
  if (batch.error) return <section><h1>Batch</h1><ErrorBox error={batch.error} /></section>;
  const b = batch.data;
  if (!b) return <p class="muted">Loading…</p>;
  const counts = b.counts ?? {};
  return (
    <section>
      <h1>Batch <Id value={id} /></h1>
      <dl class="facts">
        <dt>Status</dt><dd><Chip kind={b.status === 'completed' ? 'good' : 'neutral'}><span class="batch-status">{b.status}</span></Chip></dd>
        <dt>Matched</dt><dd>{counts.matched}</dd>
        <dt>Sent again</dt><dd class="batch-created">{counts.created}</dd>
        <dt>Pending</dt><dd>{counts.pending}</dd>
        <dt>Skipped</dt><dd>{counts.skipped}</dd>
        <dt>Created</dt><dd><Time value={b.created_at} /> by {b.created_by}</dd>
        <dt>Finished</dt><dd><Time value={b.finished_at} /></dd>
      </dl>
      {b.error ? <p class="error">{b.error}</p> : null}
      {running ? <p><button type="button" class="danger" onClick={cancel} disabled={action.running}>Cancel batch</button></p> : null}
      <ErrorBox error={action.error} />
      <h2>Items</h2>
      <table>
        <thead><tr><th>#</th><th>Dead letter</th><th>Endpoint</th><th>Outcome</th><th>New delivery</th></tr></thead>
        <tbody>
          {items.items.map((item) => (
            <tr key={item.position}>
              <td>{item.position}</td>
              <td><Id value={item.dead_delivery_id} href={`#/deliveries/${item.dead_delivery_id}`} /></td>
              <td><Id value={item.endpoint_id} href={`#/endpoints/${item.endpoint_id}`} /></td>
              <td>{item.outcome}{item.reason ? ` (${item.reason})` : ''}</td>
              <td>{item.delivery_id ? <Id value={item.delivery_id} href={`#/deliveries/${item.delivery_id}`} /> : '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Pager paged={items} label="Batch items" />
    </section>
  );
}
