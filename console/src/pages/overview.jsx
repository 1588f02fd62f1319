// Overview: what needs attention first: the kill switch, endpoints that are not sending, and
// dead letters waiting.
import { api, withQuery } from '../api.js';
import { Chip, ErrorBox, useAction, useLoad } from '../components.jsx';

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

/** How the tenant's endpoints stand (the first 100). */
function EndpointSummary({ tenant, isAdmin }) {
  const list = useLoad(tenant ? withQuery('/v1/endpoints', { tenant: isAdmin ? tenant : undefined, limit: 100 }) : null);
  if (!tenant) return <div class="card"><h2>Endpoints</h2><p>Name a tenant at the top to see its endpoints.</p></div>;
  const endpoints = list.data?.data ?? [];
  const count = (test) => endpoints.filter(test).length;
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
      </div>
    </section>
  );
}
