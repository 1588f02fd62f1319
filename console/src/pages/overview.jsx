// Overview: what needs attention first: the kill switch, endpoints that are not sending, the
// last minutes' traffic (an admin sees all tenants' and the breakers open anywhere), dead
// letters waiting and (admin) how deep each queue is.
import { api, withQuery } from '../api.js';
import { Chip, ErrorBox, Id, Time, useAction, useLoad } from '../components.jsx';
import { PortalLinks } from './portal_links.jsx';

/** The kill switch (admin only): stops or restarts all sending, after a confirmation. */
function KillSwitch() {
  const control = useLoad('/v1/control');
  const action = useAction();
  const paused = control.data?.sending_paused;
  const flip = async () => {
    const question = paused
      ? 'Start sending webhooks again, for every tenant?'
      : 'Stop ALL sending, for every tenant? Deliveries are held, not failed, until you resume.';
    if (!window.confirm(question)) return;
    await action.run(() => api('POST', paused ? '/v1/control/resume' : '/v1/control/pause'));
    control.reload();
  };
  return (
    <div class="card" role="region" aria-label="Kill switch">
      <h2>Sending</h2>
      <ErrorBox error={control.error || action.error} />
      {control.data ? (
        <>
          <p>{paused ? <Chip kind="bad">paused by the kill switch</Chip> : <Chip kind="good">sending</Chip>}</p>
          <button type="button" class={paused ? '' : 'danger'} onClick={flip} disabled={action.running}>
            {paused ? 'Resume all sending' : 'Pause all sending'}
          </button>
        </>
      ) : null}
    </div>
  );
}

/** The delivery path's queues (admin only): what each topic holds and how far behind its readers are. */
function Queues() {
  const queues = useLoad('/v1/queues');
  return (
    <div class="card wide" role="region" aria-label="Queues">
      <h2>Queues</h2>
      <ErrorBox error={queues.error} />
      {queues.data ? (
        <table>
          <thead><tr><th>Topic</th><th>Read by</th><th>Behind (lag)</th><th>Held</th></tr></thead>
          <tbody>
            {queues.data.data.map((q) => (
              <tr key={q.topic}>
                <td><code>{q.topic}</code></td>
                <td>{q.group}</td>
                <td>{q.error ? <span class="error">{q.error}</span> : q.lag}</td>
                <td class="held">{q.records ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <p class="muted">Read from the broker <Time value={queues.data?.read_at} />.{' '}
        <button type="button" onClick={queues.reload}>Refresh</button></p>
    </div>
  );
}

const percent = (rate) => (rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(1)} %`);

/** Every tenant's last 5 minutes and the breakers open now (admin only), as the dispatchers
 * report them every few seconds. */
function AllTenants() {
  const overview = useLoad('/v1/overview');
  const o = overview.data;
  const busiest = o ? Math.max(1, ...o.minutes.map((m) => m.attempts)) : 1;
  return (
    <div class="card wide" role="region" aria-label="All tenants">
      <h2>All tenants, last 5 minutes</h2>
      <ErrorBox error={overview.error} />
      {o ? (
        <>
          <dl class="facts">
            <dt>Attempts</dt><dd class="all-attempts">{o.attempts} ({o.per_second.toFixed(2)}/s)</dd>
            <dt>Success</dt><dd class="all-success">{percent(o.success_rate)}</dd>
            <dt>Breakers open</dt><dd class="all-breakers">{o.open_breakers.length}{o.open_breakers_truncated ? '+' : ''}</dd>
            <dt>Dispatchers reporting</dt><dd>{o.dispatchers_reporting}</dd>
          </dl>
          <table class="minutes">
            <caption class="muted">Attempts per minute (successful part darker)</caption>
            <thead><tr><th>Minute</th><th>Attempts</th><th>Succeeded</th><th aria-hidden="true"></th></tr></thead>
            <tbody>
              {o.minutes.map((m) => (
                <tr key={m.minute}>
                  <td><Time value={m.minute} /></td>
                  <td>{m.attempts}</td>
                  <td>{m.succeeded}</td>
                  <td aria-hidden="true" class="bar-cell">
                    <span class="bar" style={{ width: `${(m.attempts / busiest) * 100}%` }}>
                      <span class="bar-ok" style={{ width: m.attempts ? `${(m.succeeded / m.attempts) * 100}%` : '0' }} />
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {o.open_breakers.length ? (
            <table class="breakers">
              <caption>Open breakers</caption>
              <thead><tr><th>Endpoint</th><th>Tenant</th><th>URL</th><th>State</th><th>Until</th></tr></thead>
              <tbody>
                {o.open_breakers.map((b) => (
                  <tr key={b.endpoint_id}>
                    <td><Id value={b.endpoint_id} href={`#/endpoints/${b.endpoint_id}`} /></td>
                    <td>{b.tenant}</td>
                    <td><code>{b.url}</code></td>
                    <td><Chip kind="bad">{b.state}</Chip></td>
                    <td><Time value={b.open_until} /></td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : <p>No breaker is open.</p>}
          <p class="muted">Read <Time value={o.read_at} />.{' '}
            <button type="button" onClick={overview.reload}>Refresh</button></p>
        </>
      ) : null}
    </div>
  );
}

/** The last 5 minutes of the tenant's deliveries, summed over its endpoints' health windows. */
function traffic(endpoints) {
  const windows = endpoints.map((e) => e.health?.windows?.find((w) => w.window === '5m')).filter(Boolean);
  const attempts = windows.reduce((n, w) => n + w.attempts, 0);
  const succeeded = windows.reduce((n, w) => n + w.succeeded, 0);
  return { attempts, perSecond: attempts / 300, successRate: attempts ? succeeded / attempts : null };
}

/** How the tenant's endpoints stand (the first 100). */
function EndpointSummary({ tenant, isAdmin }) {
  const list = useLoad(tenant ? withQuery('/v1/endpoints', { tenant: isAdmin ? tenant : undefined, limit: 100 }) : null);
  if (!tenant) return <div class="card"><h2>Endpoints</h2><p>Name a tenant at the top to see its endpoints one by one.</p></div>;
  const endpoints = list.data?.data ?? [];
  const count = (test) => endpoints.filter(test).length;
  const recent = traffic(endpoints);
  return (
    <div class="card" role="region" aria-label="Endpoints summary">
      <h2>Endpoints of {tenant}</h2>
      <ErrorBox error={list.error} />
      <dl class="facts">
        <dt>Endpoints</dt><dd>{endpoints.length}{list.data?.next ? '+' : ''}</dd>
        <dt>Breaker open</dt><dd>{count((e) => e.circuit?.state && e.circuit.state !== 'closed')}</dd>
        <dt>Paused</dt><dd>{count((e) => e.paused)}</dd>
        <dt>Disabled</dt><dd>{count((e) => e.disabled)}</dd>
        <dt>Failing now</dt><dd>{count((e) => (e.health?.failure_streak ?? 0) > 0)}</dd>
        <dt>Attempts, 5 min</dt><dd class="attempts-5m">{recent.attempts} ({recent.perSecond.toFixed(2)}/s)</dd>
        <dt>Success, 5 min</dt><dd>{percent(recent.successRate)}</dd>
      </dl>
      <a href="#/endpoints">All endpoints →</a>
    </div>
  );
}

/** Dead letters waiting (counted up to 100). */
function DeadLetterSummary({ tenant, isAdmin }) {
  const list = useLoad(withQuery('/v1/dead-letters', { tenant: isAdmin ? tenant : undefined, limit: 100 }));
  const shown = list.data?.data?.length ?? 0;
  return (
    <div class="card" role="region" aria-label="Dead letters summary">
      <h2>Dead letters</h2>
      <ErrorBox error={list.error} />
      <p class="big">{shown}{list.data?.next ? '+' : ''}</p>
      <a href="#/dead-letters">Find and replay →</a>
    </div>
  );
}

export function Overview({ isAdmin, tenant }) {
  return (
    <section>
      <h1>Overview</h1>
      <div class="cards">
        {isAdmin ? <KillSwitch /> : null}
        <EndpointSummary tenant={tenant} isAdmin={isAdmin} />
        <DeadLetterSummary tenant={tenant} isAdmin={isAdmin} />
        {isAdmin ? <PortalLinks key={tenant} tenant={tenant} /> : null}
      </div>
      {isAdmin ? <AllTenants /> : null}
      {isAdmin ? <Queues /> : null}
    </section>
  );
}
