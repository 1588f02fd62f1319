// Endpoints: their health at a glance, and creating, editing, pausing, rotating and deleting.
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { Chip, ErrorBox, Id, Pager, Time, useAction, useLoad, usePaged } from '../components.jsx';

function percent(rate) {
  return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(1)} %`;
}

/** Chips for what stops or slows sending to an endpoint. */
export function EndpointState({ endpoint }) {
  const health = endpoint.health;
  const breaker = endpoint.circuit?.state;
  return (
    <span class="chips">
      {endpoint.disabled ? <Chip kind="bad">disabled</Chip> : null}
      {endpoint.paused ? <Chip kind="warn">paused</Chip> : null}
      {breaker && breaker !== 'closed' ? <Chip kind="bad">breaker {breaker}</Chip> : null}
      {health?.status === 'warning' ? <Chip kind="warn">warning</Chip> : null}
      {!endpoint.disabled && !endpoint.paused && (!breaker || breaker === 'closed') && health?.status !== 'warning'
        ? <Chip kind="good">healthy</Chip> : null}
    </span>
  );
}

/** The secret of a new or rotated endpoint: shown this once, never again. */
function SecretOnce({ secret, onDone }) {
  if (!secret) return null;
  return (
    <div class="secret" role="status">
      <p><strong>Signing secret, shown once.</strong> Give it to the receiver now: the console cannot show it again.</p>
      <Id value={secret} />
      <button type="button" onClick={onDone}>I have kept it</button>
    </div>
  );
}

function parseTypes(text) {
  return text.split(',').map((t) => t.trim()).filter(Boolean);
}

function CreateEndpoint({ tenant, onCreated }) {
  const [url, setUrl] = useState('');
  const [types, setTypes] = useState('');
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const created = await action.run(() => api('POST', '/v1/endpoints', {
      tenant, url: url.trim(), event_types: parseTypes(types),
    }));
    if (created) {
      setUrl('');
      setTypes('');
      onCreated(created);
    }
  };
  return (
    <form class="inline-form" onSubmit={submit} aria-label="New endpoint">
      <h2>New endpoint</h2>
      <label>URL <input type="url" required value={url} placeholder="https://example.com/webhooks"
        onInput={(e) => setUrl(e.currentTarget.value)} /></label>
      <label>Event types <input value={types} placeholder="order.created, order.paid (empty: all)"
        onInput={(e) => setTypes(e.currentTarget.value)} /></label>
      <button type="submit" disabled={action.running}>Create endpoint</button>
      <ErrorBox error={action.error} />
    </form>
  );
}

/** Pause/resume, rotate the secret and delete: one endpoint's actions. */
function EndpointActions({ endpoint, onChanged, onSecret }) {
  const action = useAction();
  const act = (method, path, body) => action.run(async () => {
    const answer = await api(method, path, body);
    onChanged(answer);
    return answer;
  });
  const base = `/v1/endpoints/${endpoint.id}`;
  const rotate = async () => {
    if (!window.confirm(`Rotate the signing secret of ${endpoint.url}? The old one keeps signing for the overlap period.`)) return;
    const answer = await act('POST', `${base}/secret/rotate`);
    if (answer?.secret) onSecret(answer.secret);
  };
  const remove = () => {
    if (window.confirm(`Delete the endpoint ${endpoint.url}? Nothing more is sent to it.`)) act('DELETE', base);
  };
  return (
    <span class="actions">
      {endpoint.paused
        ? <button type="button" onClick={() => act('POST', `${base}/resume`)}>Resume</button>
        : <button type="button" onClick={() => act('POST', `${base}/pause`)}>Pause</button>}
      <button type="button" onClick={rotate}>Rotate secret</button>
      <button type="button" class="danger" onClick={remove}>Delete</button>
      <ErrorBox error={action.error} />
    </span>
  );
}

export function Endpoints({ tenant, isAdmin }) {
  const paged = usePaged(tenant ? '/v1/endpoints' : null, isAdmin ? { tenant } : {});
  const [secret, setSecret] = useState(null);
  if (!tenant) {
    return <section><h1>Endpoints</h1><p>Name a tenant at the top to see its endpoints.</p></section>;
  }
  return (
    <section>
      <h1>Endpoints of {tenant}</h1>
      <SecretOnce secret={secret} onDone={() => setSecret(null)} />
      <CreateEndpoint tenant={tenant} onCreated={(created) => { setSecret(created.secret ?? null); paged.reload(); }} />
      <ErrorBox error={paged.error} />
      <table>
        <caption class="visually-hidden">Endpoints</caption>
        <thead>
          <tr><th>Endpoint</th><th>URL</th><th>Event types</th><th>State</th><th>Success (5 min)</th><th>Failure streak</th><th>Actions</th></tr>
        </thead>
        <tbody>
          {paged.items.map((endpoint) => (
            <tr key={endpoint.id}>
              <td><Id value={endpoint.id} href={`#/endpoints/${endpoint.id}`} /></td>
              <td class="url">{endpoint.url}</td>
              <td>{endpoint.event_types?.length ? endpoint.event_types.join(', ') : <span class="muted">all</span>}</td>
              <td><EndpointState endpoint={endpoint} /></td>
              <td>{percent(endpoint.health?.windows?.[0]?.success_rate)}</td>
              <td>{endpoint.health?.failure_streak ?? 0}</td>
              <td><EndpointActions endpoint={endpoint} onChanged={() => paged.reload()} onSecret={setSecret} /></td>
            </tr>
          ))}
        </tbody>
      </table>
      {!paged.loading && paged.items.length === 0 ? <p class="muted">No endpoints yet.</p> : null}
      <Pager paged={paged} label="Endpoints" />
    </section>
  );
}

/** Only what was changed goes in the PATCH: the API applies it to the endpoint as it stands. */
function changedFields(endpoint, form) {
  const changes = {};
  const numberOrNull = (text) => (text === '' ? null : Number(text));
  if (form.url.trim() !== endpoint.url) changes.url = form.url.trim();
  const types = parseTypes(form.types);
  if (types.join(',') !== (endpoint.event_types ?? []).join(',')) changes.event_types = types;
  if (form.disabled !== endpoint.disabled) changes.disabled = form.disabled;
  if (numberOrNull(form.maxAttempts) !== (endpoint.max_attempts ?? null)) {
    changes.max_attempts = numberOrNull(form.maxAttempts);
  }
  const rate = endpoint.rate_limit ?? null;
  if (numberOrNull(form.perSecond) !== (rate?.per_second ?? null)
    || numberOrNull(form.burst) !== (rate?.burst ?? null)) {
    changes.rate_limit = form.perSecond === '' ? null : {
      per_second: Number(form.perSecond),
      ...(form.burst === '' ? {} : { burst: Number(form.burst) }),
    };
  }
  if (form.ordering !== endpoint.ordering) changes.ordering = form.ordering;
  if (numberOrNull(form.maxInFlight) !== endpoint.max_in_flight) {
    changes.max_in_flight = numberOrNull(form.maxInFlight);
  }
  if (form.onDeadLetter !== endpoint.on_dead_letter) changes.on_dead_letter = form.onDeadLetter;
  const batch = batchOf(form);
  if (canonical(batch) !== canonical(endpoint.batch ?? null)) changes.batch = batch;
  const rules = rulesOf(form, endpoint.health_rules);
  if (canonical(rules) !== canonical(orNull(endpoint.health_rules))) changes.health_rules = rules;
  return changes;
}

/** JSON with keys in order, to tell whether two settings objects say the same. */
function canonical(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
}

/** The form's batching: null unless ticked; the API checks the figures and says what is wrong. */
function batchOf(form) {
  if (!form.batching) return null;
  return { max_events: Number(form.batchMaxEvents), max_wait: form.batchMaxWait.trim() };
}

/** The health-rule fields and how each is sent: numbers as numbers, durations as text. */
const RULE_FIELDS = [
  ['warn_success_rate', 'Warn under this success rate', 'number', '0.9'],
  ['warn_min_attempts', 'Success-rate warning: at least these attempts', 'number', '20'],
  ['warn_window', 'Success-rate warning: over this window', 'text', '5m'],
  ['warn_streak', 'Warn after this many failures in a row', 'number', '10'],
  ['disable_after', 'Disable after failing for', 'text', '5d, or never'],
  ['disable_streak', 'Disable after this many failures in a row', 'number', 'none'],
];

/** The endpoint's own health rules from the form (blank: the installation's), null if none.
 * A rule this form does not know (from a newer API) is kept as it is; text that is not a
 * number goes as typed, so the API names the field. */
function rulesOf(form, stored) {
  const known = new Set(RULE_FIELDS.map(([key]) => key));
  const rules = Object.fromEntries(Object.entries(stored ?? {}).filter(([key]) => !known.has(key)));
  for (const [key, , kind] of RULE_FIELDS) {
    const text = String(form.rules[key] ?? '').trim();
    if (text === '') continue;
    const number = Number(text);
    rules[key] = kind === 'number' && Number.isFinite(number) ? number : text;
  }
  return Object.keys(rules).length ? rules : null;
}

/** Settings objects as compared: an empty one is none. */
const orNull = (value) => (value && Object.keys(value).length ? value : null);

function EditEndpoint({ endpoint, onSaved }) {
  const [form, setForm] = useState({
    url: endpoint.url,
    types: (endpoint.event_types ?? []).join(', '),
    maxAttempts: endpoint.max_attempts ?? '',
    perSecond: endpoint.rate_limit?.per_second ?? '',
    burst: endpoint.rate_limit?.burst ?? '',
    ordering: endpoint.ordering,
    maxInFlight: endpoint.max_in_flight ?? '',
    onDeadLetter: endpoint.on_dead_letter,
    disabled: endpoint.disabled,
    batching: Boolean(endpoint.batch),
    batchMaxEvents: endpoint.batch?.max_events ?? 100,
    batchMaxWait: endpoint.batch?.max_wait ?? '30s',
    rules: { ...(endpoint.health_rules ?? {}) },
  });
  const set = (name) => (e) => setForm({
    ...form,
    [name]: e.currentTarget.type === 'checkbox' ? e.currentTarget.checked : e.currentTarget.value,
  });
  const setRule = (key) => (e) => setForm({ ...form, rules: { ...form.rules, [key]: e.currentTarget.value } });
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const changes = changedFields(endpoint, { ...form, maxAttempts: String(form.maxAttempts),
      perSecond: String(form.perSecond), burst: String(form.burst), maxInFlight: String(form.maxInFlight) });
    if (Object.keys(changes).length === 0) return;
    const result = await action.run(() => api('PATCH', `/v1/endpoints/${endpoint.id}`, changes));
    if (result) onSaved(result);
  };
  return (
    <form class="stacked" onSubmit={submit} aria-label="Edit endpoint">
      <h2>Settings</h2>
      <label>URL <input type="url" required value={form.url} onInput={set('url')} /></label>
      <label>Event types <input value={form.types} placeholder="empty: all" onInput={set('types')} /></label>
      <label>Most attempts <input type="number" min="1" value={form.maxAttempts}
        placeholder="the retry policy's" onInput={set('maxAttempts')} /></label>
      <label>Rate limit, per second <input type="number" min="1" value={form.perSecond}
        placeholder="none" onInput={set('perSecond')} /></label>
      <label>Rate limit burst <input type="number" min="1" value={form.burst}
        placeholder="the default" onInput={set('burst')} /></label>
      <label>Ordering <select value={form.ordering} onChange={set('ordering')}>
        <option value="partition">partition: one at a time, first attempts in order</option>
        <option value="strict">strict: one at a time, each waits for the one before</option>
        <option value="none">none: up to "most in flight" at once</option>
      </select></label>
      <label>Most in flight (ordering none) <input type="number" min="1" value={form.maxInFlight}
        onInput={set('maxInFlight')} /></label>
      <label>On a dead letter (ordering strict) <select value={form.onDeadLetter} onChange={set('onDeadLetter')}>
        <option value="hold">hold the queue until it is replayed</option>
        <option value="continue">continue with the next</option>
      </select></label>
      <fieldset>
        <legend>Batching (ordering partition or none)</legend>
        <label class="check"><input type="checkbox" checked={form.batching} onChange={set('batching')} /> Send deliveries in batches</label>
        <label>Most events in a batch <input type="number" min="1" value={form.batchMaxEvents}
          disabled={!form.batching} onInput={set('batchMaxEvents')} /></label>
        <label>Longest wait for a batch to fill <input value={form.batchMaxWait} placeholder="30s"
          disabled={!form.batching} onInput={set('batchMaxWait')} /></label>
      </fieldset>
      <fieldset>
        <legend>Health rules (blank: the installation's)</legend>
        {RULE_FIELDS.map(([key, label, kind, placeholder]) => (
          <label key={key}>{label} <input inputmode={kind === 'number' ? 'decimal' : undefined}
            value={form.rules[key] ?? ''} placeholder={placeholder} onInput={setRule(key)} /></label>
        ))}
      </fieldset>
      <label class="check"><input type="checkbox" checked={form.disabled} onChange={set('disabled')} /> Disabled</label>
      <button type="submit" disabled={action.running}>Save</button>
      <ErrorBox error={action.error} />
    </form>
  );
}

export function EndpointDetail({ id }) {
  const endpoint = useLoad(`/v1/endpoints/${id}`);
  const health = useLoad(`/v1/endpoints/${id}/health`);
  const [secret, setSecret] = useState(null);
  if (endpoint.error) return <section><h1>Endpoint</h1><ErrorBox error={endpoint.error} /></section>;
  if (!endpoint.data) return <p class="muted">Loading…</p>;
  const shown = { ...endpoint.data, health: health.data };
  return (
    <section>
      <h1>Endpoint <Id value={id} /></h1>
      <p class="url">{shown.url} <EndpointState endpoint={shown} /></p>
      <SecretOnce secret={secret} onDone={() => setSecret(null)} />
      <EndpointActions endpoint={shown}
        onChanged={() => { endpoint.reload(); health.reload(); }}
        onSecret={setSecret} />
      <p><a href={`#/deliveries?${new URLSearchParams({ endpoint_id: id })}`}>Its deliveries</a>
        {' · '}<a href={`#/dead-letters?${new URLSearchParams({ endpoint_id: id })}`}>Its dead letters</a></p>
      <h2>Health</h2>
      <ErrorBox error={health.error} />
      {health.data ? (
        <table>
          <thead><tr><th>Window</th><th>Attempts</th><th>Success</th><th>p50</th><th>p99</th></tr></thead>
          <tbody>
            {health.data.windows.map((w) => (
              <tr key={w.window}><td>{w.window}</td><td>{w.attempts}</td><td>{percent(w.success_rate)}</td>
                <td>{w.latency_ms?.p50 ?? '—'} ms</td><td>{w.latency_ms?.p99 ?? '—'} ms</td></tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {health.data ? (
        <dl class="facts">
          <dt>Failure streak</dt><dd>{health.data.failure_streak}</dd>
          <dt>Last success</dt><dd><Time value={health.data.last_success_at} /></dd>
          <dt>Last failure</dt><dd>{health.data.last_failure
            ? <><Time value={health.data.last_failure.at} /> ({health.data.last_failure.class})</> : '—'}</dd>
        </dl>
      ) : null}
      <dl class="facts">
        <dt>Breaker</dt><dd>{shown.circuit?.state}{shown.circuit?.open_until ? <> until <Time value={shown.circuit.open_until} /></> : null}</dd>
        <dt>Created</dt><dd><Time value={shown.created_at} /></dd>
        <dt>Changed</dt><dd class="changed-at"><Time value={shown.updated_at} /></dd>
      </dl>
      <EditEndpoint key={shown.updated_at} endpoint={shown} onSaved={() => { endpoint.reload(); health.reload(); }} />
    </section>
  );
}
