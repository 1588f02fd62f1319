// Deliveries: search them, and follow one through its attempts.
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { Chip, ErrorBox, Id, Pager, Time, toRfc3339, useAction, useLoad, usePaged } from '../components.jsx';

const STATUSES = ['pending', 'delivering', 'delivered', 'retrying', 'dead_lettered'];
const STATUS_KIND = { delivered: 'good', dead_lettered: 'bad', retrying: 'warn' };

export function StatusChip({ status }) {
  return <Chip kind={STATUS_KIND[status] ?? 'neutral'}>{status?.replace('_', ' ')}</Chip>;
}

/** A filter form kept in the address, so a search can be linked and reloaded. */
export function FilterForm({ page, fields, query, label }) {
  const [values, setValues] = useState(query);
  const submit = (event) => {
    event.preventDefault();
    const kept = Object.fromEntries(Object.entries(values).filter(([, v]) => v));
    window.location.hash = `#/${page}?${new URLSearchParams(kept)}`;
  };
  return (
    <form class="filters" onSubmit={submit} aria-label={label}>
      {fields.map(({ name, title, options, placeholder, type }) => (
        <label key={name}>
          {title}{' '}
          {options ? (
            <select value={values[name] ?? ''} onChange={(e) => setValues({ ...values, [name]: e.currentTarget.value })}>
              <option value="">any</option>
              {options.map((o) => <option value={o}>{o}</option>)}
            </select>
          ) : (
            <input type={type ?? 'text'} value={values[name] ?? ''} placeholder={placeholder}
              onInput={(e) => setValues({ ...values, [name]: e.currentTarget.value })} />
          )}
        </label>
      ))}
      <button type="submit">Search</button>
    </form>
  );
}

export function Deliveries({ route, isAdmin, tenant }) {
  const query = route.query;
  const scope = isAdmin && tenant ? { tenant } : {};
  const paged = usePaged('/v1/deliveries', {
    ...scope, ...query, since: toRfc3339(query.since), until: toRfc3339(query.until),
  });
  return (
    <section>
      <h1>Deliveries</h1>
      <FilterForm page="deliveries" query={query} label="Search deliveries" fields={[
        { name: 'event_id', title: 'Event', placeholder: 'evt_…' },
        { name: 'endpoint_id', title: 'Endpoint', placeholder: 'ep_…' },
        { name: 'status', title: 'Status', options: STATUSES },
        { name: 'event_type', title: 'Event type' },
        { name: 'since', title: 'Since', type: 'datetime-local' },
        { name: 'until', title: 'Until', type: 'datetime-local' },
      ]} />
      <ErrorBox error={paged.error} />
      <table>
        <thead>
          <tr><th>Delivery</th><th>Event</th><th>Type</th><th>Endpoint</th><th>Status</th><th>Attempts</th><th>Next attempt</th><th>Updated</th></tr>
        </thead>
        <tbody>
          {paged.items.map((d) => (
            <tr key={d.id}>
              <td><Id value={d.id} href={`#/deliveries/${d.id}`} /></td>
              <td><Id value={d.event_id} /></td>
              <td>{d.event_type}</td>
              <td><Id value={d.endpoint_id} href={`#/endpoints/${d.endpoint_id}`} /></td>
              <td><StatusChip status={d.status} /></td>
              <td>{d.attempts}</td>
              <td><Time value={d.next_attempt_at} /></td>
              <td><Time value={d.updated_at} /></td>
            </tr>
          ))}
        </tbody>
      </table>
      {!paged.loading && paged.items.length === 0 ? <p class="muted">No deliveries match.</p> : null}
      <Pager paged={paged} label="Deliveries" />
    </section>
  );
}

/** Every attempt, oldest first: what was answered, how it was judged and what comes next. */
export function AttemptTimeline({ attempts }) {
  if (!attempts?.length) return <p class="muted">No attempts yet.</p>;
  return (
    <ol class="timeline" aria-label="Attempts">
      {attempts.map((a) => (
        <li key={a.number} class={a.class === 'HTTP_2XX_DELIVERED' ? 'ok' : 'failed'}>
          <strong>Attempt {a.number}</strong> <Time value={a.started_at} />
          {' · '}{a.status_code ? `HTTP ${a.status_code}` : 'no answer'}
          {' · '}<Chip kind={a.class === 'HTTP_2XX_DELIVERED' ? 'good' : 'bad'}>{a.class}</Chip>
          {' · '}{a.latency_ms} ms
          {a.error ? <div class="detail">Error: {a.error}</div> : null}
          {a.response_snippet ? <pre class="snippet">{a.response_snippet}</pre> : null}
          {a.next_attempt_at ? <div class="detail">Next try <Time value={a.next_attempt_at} />{a.tier ? ` (tier ${a.tier})` : ''}</div> : null}
        </li>
      ))}
    </ol>
  );
}

export function DeliveryDetail({ id }) {
  const delivery = useLoad(`/v1/deliveries/${id}`);
  const attempts = useLoad(`/v1/deliveries/${id}/attempts`);
  const action = useAction();
  const resend = async () => {
    if (!window.confirm('Send this dead-lettered delivery again?')) return;
    const batch = await action.run(() => api('POST', `/v1/deliveries/${id}/resend`));
    if (batch?.id) window.location.hash = `#/batches/${batch.id}`;
  };
  if (delivery.error) return <section><h1>Delivery</h1><ErrorBox error={delivery.error} /></section>;
  const d = delivery.data;
  if (!d) return <p class="muted">Loading…</p>;
  return (
    <section>
      <h1>Delivery <Id value={id} /></h1>
      <dl class="facts">
        <dt>Status</dt><dd><StatusChip status={d.status} /></dd>
        <dt>Event</dt><dd><Id value={d.event_id} href={`#/deliveries?event_id=${d.event_id}`} /> ({d.event_type})</dd>
        <dt>Endpoint</dt><dd><Id value={d.endpoint_id} href={`#/endpoints/${d.endpoint_id}`} /></dd>
        <dt>Tenant</dt><dd>{d.tenant}</dd>
        <dt>Attempts</dt><dd>{d.attempts}</dd>
        <dt>Next attempt</dt><dd><Time value={d.next_attempt_at} /></dd>
        <dt>Created</dt><dd><Time value={d.created_at} /></dd>
        <dt>Updated</dt><dd><Time value={d.updated_at} /></dd>
      </dl>
      {d.status === 'dead_lettered'
        ? <p><button type="button" onClick={resend} disabled={action.running}>Resend</button></p> : null}
      <ErrorBox error={action.error} />
      <h2>Attempts</h2>
      <ErrorBox error={attempts.error} />
      <AttemptTimeline attempts={attempts.data?.data} />
      <p><button type="button" onClick={() => { delivery.reload(); attempts.reload(); }}>Refresh</button></p>
    </section>
  );
}
