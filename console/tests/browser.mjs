// The console in a real browser (Debian's Chromium, driven by Playwright) against a live
// pipeline: HOOKSTREAM_API_URL (the ingest API serving /console) and HOOKSTREAM_API_TOKEN (its
// admin token). The test's own receiver listens on 127.0.0.1. It signs in, creates an endpoint,
// sends an event, follows its delivery, forces a failure, finds the dead letter, dry-runs and
// replays it, sees it delivered, then checks that a tenant key sees only its tenant (by URL
// too), that a revoked key goes back to sign-in, and that a portal link opens its tenant's
// pages alone. Screenshots of each page go to
// HOOKSTREAM_CONSOLE_SCREENSHOTS (default: ../target/console-screenshots).
// Run by tests/e2e/tests/console.rs (`make test`); exits non-zero on the first failed check.
import { createServer } from 'node:http';
import { mkdir, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const base = process.env.HOOKSTREAM_API_URL;
const adminToken = process.env.HOOKSTREAM_API_TOKEN;
assert.ok(base && adminToken, 'set HOOKSTREAM_API_URL and HOOKSTREAM_API_TOKEN');
const browserPath = process.env.HOOKSTREAM_CHROMIUM ?? '/usr/bin/chromium';
const shots = resolve(process.env.HOOKSTREAM_CONSOLE_SCREENSHOTS ?? '../target/console-screenshots');
// Every wait is bounded: the pipeline settles a delivery in well under this.
const SETTLE_MS = 60_000;

/** Polls `check` until it returns a truthy value; fails with `what` after `timeout` ms. */
async function eventually(what, check, timeout = SETTLE_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The API, called directly (what a producer or an admin script does beside the console). */
async function call(method, path, body, token = adminToken) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** A webhook receiver answering what the test says; keeps every webhook it got. */
function startReceiver() {
  const received = [];
  const receiver = { answer: 200, received };
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      received.push({ id: request.headers['webhook-id'], body: JSON.parse(body), answered: receiver.answer });
      response.writeHead(receiver.answer, { 'Content-Type': 'text/plain' });
      response.end(receiver.answer === 200 ? 'ok' : 'no such order');
    });
  });
  return new Promise((ready) => server.listen(0, '127.0.0.1', () => {
    receiver.url = `http://127.0.0.1:${server.address().port}/hooks`;
    receiver.close = () => server.close();
    ready(receiver);
  }));
}

// The accessibility audit: axe-core's WCAG 2.1 A and AA rules, run on each page shown.
const axeSource = await readFile(new URL('../node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
const AUDITED_RULES = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const accessibilityFindings = [];

/** Runs the audit on what `page` shows now; what it finds is kept, with the page's name. */
async function audit(page, name) {
  // Evaluated by the browser's debugging protocol, which the page's CSP does not govern.
  await page.evaluate(axeSource);
  const { passed, found } = await page.evaluate((tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags } })
    .then((result) => ({
      passed: result.passes.length,
      found: result.violations.map((v) => ({
        rule: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
      })),
    })), AUDITED_RULES);
  // An audit that checked nothing would pass anything.
  assert.ok(passed >= 5, `the accessibility audit of ${name} checked ${passed} rules`);
  for (const finding of found) accessibilityFindings.push({ page: name, ...finding });
  return passed;
}

async function sendEvent(tenant, payload) {
  const sent = await call('POST', '/v1/events', { tenant, type: 'order.created', payload });
  assert.equal(sent.status, 202, JSON.stringify(sent.body));
  return sent.body.id;
}

async function deliveryOf(eventId, status) {
  const list = await call('GET', `/v1/deliveries?event_id=${eventId}`);
  return list.body.data.find((d) => d.status === status);
}

await mkdir(shots, { recursive: true });
const receiver = await startReceiver();
const browser = await chromium.launch({
  executablePath: browserPath,
  headless: true,
  // As root, without a sandbox; and no calls home (this machine's network is closed).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const pageErrors = [];
const dialogs = [];
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, timezoneId: 'Europe/Berlin' });
  const page = await context.newPage();
  page.setDefaultTimeout(SETTLE_MS);
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('dialog', (dialog) => { dialogs.push(dialog.message()); dialog.accept(); });
  const nav = (name) => page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true });
  // Each page shown is audited for accessibility, then pictured.
  const shot = async (name) => {
    await audit(page, name);
    await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  };
  // Clicks `button` (a locator) until `done` shows: a page shows what it loaded, and reloads
  // on a click, while the pipeline settles behind it.
  const refreshUntil = async (what, button, done) => eventually(what, async () => {
    await button.click();
    return (await done.count()) > 0;
  });

  // Sign in: a wrong token is refused with a message; the admin token, typed and sent with Enter.
  await page.goto(`${base}/console/`);
  const tokenField = page.getByLabel('Admin token or tenant API key');
  await tokenField.fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('This token or key is not accepted.').waitFor();
  await audit(page, 'sign-in');
  // The keyboard alone, on a fresh page: Tab reaches the field first, Enter signs in.
  await page.reload();
  await tokenField.waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'token', 'Tab reaches the key first');
  await page.keyboard.type(adminToken);
  await page.keyboard.press('Enter');
  await page.getByRole('navigation', { name: 'Pages' }).waitFor();
  assert.equal(await page.locator('.role').textContent(), 'admin');
  await page.getByRole('textbox', { name: 'Tenant' }).fill('acme');
  await page.getByRole('textbox', { name: 'Tenant' }).press('Enter');

  // Create an endpoint: its secret is shown once. The page is reached with Tab and Enter.
  await eventually('Tab to reach the Endpoints link', async () => {
    await page.keyboard.press('Tab');
    return page.evaluate(() => document.activeElement?.textContent === 'Endpoints');
  }, 5_000);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Endpoints of acme' }).waitFor();
  await page.getByLabel('URL').fill(receiver.url);
  await page.getByLabel('Event types').fill('order.created');
  await page.getByRole('button', { name: 'Create endpoint' }).click();
  await page.getByText('Signing secret, shown once.').waitFor();
  const secret = await page.locator('.secret code').textContent();
  assert.match(secret, /^whsec_/);
  const row = page.locator('tr', { hasText: receiver.url });
  await row.waitFor();
  const endpointId = (await row.locator('code').first().textContent()).trim();
  assert.match(endpointId, /^ep_/);
  await shot('endpoints');
  await page.getByRole('button', { name: 'I have kept it' }).click();
  assert.equal(await page.locator('.secret').count(), 0, 'the secret is not shown again');

  // A problem from the API is shown as the API words it (a destination this install refuses).
  await page.getByLabel('URL').fill('http://10.20.30.40/hooks');
  await page.getByRole('button', { name: 'Create endpoint' }).click();
  await page.locator('form[aria-label="New endpoint"] .error').waitFor();

  // Edit its settings on its own page (the id's link): only what changed is sent.
  await row.locator('a').first().click();
  await page.getByRole('form', { name: 'Edit endpoint' }).waitFor();
  await page.getByLabel('Most attempts').fill('5');
  await page.getByLabel('Rate limit, per second').fill('50');
  await page.getByRole('button', { name: 'Save' }).click();
  const edited = await eventually('the settings saved', async () => {
    const shown = (await call('GET', `/v1/endpoints/${endpointId}`)).body;
    return shown.max_attempts === 5 && shown.rate_limit?.per_second === 50 && shown;
  });
  assert.equal(edited.ordering, 'partition', 'what was not changed stays');
  assert.deepEqual(edited.event_types, ['order.created']);
  // The page reads the endpoint again after a save: its form then starts from what was saved.
  await page.locator(`.changed-at time[datetime="${edited.updated_at}"]`).waitFor();
  // Batching and health rules: a wait past the longest retry delay is refused as the API says;
  // then batching is set, and taken off again, while the rules stay.
  const editForm = page.getByRole('form', { name: 'Edit endpoint' });
  await editForm.getByLabel('Send deliveries in batches').check();
  await editForm.getByLabel('Most events in a batch').fill('10');
  await editForm.getByLabel('Longest wait for a batch to fill').fill('5s');
  await editForm.getByLabel('Warn after this many failures in a row').fill('50');
  await editForm.getByLabel('Disable after failing for').fill('never');
  await editForm.getByRole('button', { name: 'Save' }).click();
  await editForm.locator('.error', { hasText: 'the longest retry delay' }).waitFor();
  await editForm.getByLabel('Longest wait for a batch to fill').fill('500ms');
  await editForm.getByRole('button', { name: 'Save' }).click();
  const batched = await eventually('batching and rules saved', async () => {
    const shown = (await call('GET', `/v1/endpoints/${endpointId}`)).body;
    return shown.batch && shown;
  });
  assert.deepEqual(batched.batch, { max_events: 10, max_wait: '500ms' });
  assert.deepEqual(batched.health_rules, { warn_streak: 50, disable_after: 'never' });
  await page.locator(`.changed-at time[datetime="${batched.updated_at}"]`).waitFor();
  assert.ok(await editForm.getByLabel('Send deliveries in batches').isChecked(), 'the form shows what was saved');
  await editForm.getByLabel('Send deliveries in batches').uncheck();
  await editForm.getByRole('button', { name: 'Save' }).click();
  const unbatched = await eventually('batching taken off', async () => {
    const shown = (await call('GET', `/v1/endpoints/${endpointId}`)).body;
    return shown.batch === null && shown;
  });
  assert.deepEqual(unbatched.health_rules, { warn_streak: 50, disable_after: 'never' }, 'the rules stay');
  assert.equal(unbatched.max_attempts, 5);
  await page.locator(`.changed-at time[datetime="${unbatched.updated_at}"]`).waitFor();
  await shot('endpoint');

  // Send an event; see its delivery and its attempt.
  const firstEvent = await sendEvent('acme', { order: 1 });
  await eventually('the first webhook', () => receiver.received.length === 1);
  await page.goto(`${base}/console/#/deliveries?event_id=${firstEvent}`);
  await refreshUntil('the delivery to show delivered', page.getByRole('button', { name: 'Search' }),
    page.locator('tbody .chip', { hasText: 'delivered' }));
  await page.locator('tbody tr a code').first().click();
  await page.getByText('Attempt 1').waitFor();
  await page.getByText('HTTP 200').waitFor();
  const time = page.locator('.timeline time').first();
  assert.match(await time.getAttribute('title'), /Z \(UTC\)$/, 'a time shows its UTC value on hover');
  await shot('delivery');

  // Force a failure: the receiver refuses for good, so the delivery is dead-lettered.
  receiver.answer = 400;
  const secondEvent = await sendEvent('acme', { order: 2 });
  const dead = await eventually('the second delivery dead-lettered', () => deliveryOf(secondEvent, 'dead_lettered'));

  // Find the dead letter, dry-run its replay, replay it and watch the batch finish.
  await page.goto(`${base}/console/#/dead-letters?endpoint_id=${endpointId}`);
  await refreshUntil('the dead letter to be listed', page.getByRole('button', { name: 'Search' }),
    page.locator('tbody tr', { hasText: dead.id }));
  // Filtered by words of its reason: found by what it says, not by what it does not.
  await page.getByLabel('Reason contains').fill('gave up');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText('No dead letters match.').waitFor();
  await page.getByLabel('Reason contains').fill('NOT RETRIED');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('tbody tr', { hasText: dead.id }).waitFor();
  await page.getByRole('checkbox', { name: `Select ${dead.id}` }).check();
  await page.getByRole('button', { name: 'Dry run: 1 selected' }).click();
  await page.locator('.plan-count', { hasText: '1' }).waitFor();
  await shot('dead-letters');
  receiver.answer = 200;
  await page.getByRole('button', { name: 'Replay 1' }).click();
  assert.match(dialogs.at(-1), /^Replay 1 dead letter\?/, 'the replay asks first, with the count');
  await page.locator('.batch-status', { hasText: 'completed' }).waitFor();
  assert.equal(await page.locator('.batch-created').textContent(), '1');
  await shot('batch');
  await eventually('the replayed webhook', () =>
    receiver.received.some((w) => w.answered === 200 && w.body.data?.order === 2));
  await page.goto(`${base}/console/#/deliveries?event_id=${secondEvent}`);
  await refreshUntil('the replay delivered', page.getByRole('button', { name: 'Search' }),
    page.locator('tbody .chip', { hasText: 'delivered' }));

  // Search deliveries by type and time: the endpoint's three (the first, the dead one, its
  // replay) are order.created; none was created in 2099.
  await page.goto(`${base}/console/#/deliveries?endpoint_id=${endpointId}&event_type=order.created`);
  await page.locator('tbody tr').nth(2).waitFor();
  assert.equal(await page.locator('tbody tr').count(), 3);
  await page.getByLabel('Since').fill('2099-01-01T00:00');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText('No deliveries match.').waitFor();
  assert.match(page.url(), /since=2099-01-01T00%3A00/, 'a search is kept in the address');

  // The overview, and the kill switch (admin only, confirmed both ways).
  await nav('Overview').click();
  const killSwitch = page.getByRole('region', { name: 'Kill switch' });
  await killSwitch.getByText('sending', { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Pause all sending' }).click();
  await killSwitch.getByText('paused by the kill switch').waitFor();
  assert.equal((await call('GET', '/v1/control')).body.sending_paused, true);
  await page.getByRole('button', { name: 'Resume all sending' }).click();
  await killSwitch.getByText('sending', { exact: true }).waitFor();
  assert.equal((await call('GET', '/v1/control')).body.sending_paused, false);
  // The dispatcher writes endpoint health every few seconds: the page, reloaded until it shows.
  await eventually('the last minutes\' attempts counted', async () => {
    await page.reload();
    const text = await page.locator('.attempts-5m').textContent();
    return text !== '0 (0.00/s)';
  });
  const queues = page.getByRole('region', { name: 'Queues' });
  await queues.locator('tr', { hasText: 'hookstream.deliveries' }).waitFor();
  await refreshUntil('the dead-letter topic to hold the dead letter', queues.getByRole('button', { name: 'Refresh' }),
    queues.locator('tr', { hasText: 'hookstream.dlq' }).locator('td.held', { hasText: /^1$/ }));
  // Every tenant's last minutes, and an outage at another tenant's endpoint: five failures in a
  // row open its breaker, listed with its tenant.
  const allTenants = page.getByRole('region', { name: 'All tenants' });
  await allTenants.locator('table.minutes tbody tr').nth(4).waitFor();
  assert.equal(await allTenants.locator('table.minutes tbody tr').count(), 5);
  await refreshUntil('all tenants\' attempts counted', allTenants.getByRole('button', { name: 'Refresh' }),
    allTenants.locator('.all-attempts', { hasText: /^[1-9]/ }));
  const outage = await call('POST', '/v1/endpoints', {
    tenant: 'outage', url: 'http://127.0.0.1:9/down', event_types: ['outage.ping'], max_attempts: 1,
  });
  assert.equal(outage.status, 201, JSON.stringify(outage.body));
  for (let n = 0; n < 5; n += 1) {
    const sent = await call('POST', '/v1/events', { tenant: 'outage', type: 'outage.ping', payload: { n } });
    assert.equal(sent.status, 202, JSON.stringify(sent.body));
  }
  const outageRow = allTenants.locator('table.breakers tbody tr', { hasText: outage.body.id });
  await refreshUntil('the outage\'s breaker in the overview', allTenants.getByRole('button', { name: 'Refresh' }), outageRow);
  assert.match(await outageRow.textContent(), /outage.*open/);
  await shot('overview');

  // A long list pages: 30 endpoints of another tenant, 25 a page.
  for (let n = 0; n < 30; n += 1) {
    const made = await call('POST', '/v1/endpoints', { tenant: 'paging', url: `${receiver.url}/p${n}`, event_types: [] });
    assert.equal(made.status, 201, JSON.stringify(made.body));
  }
  await page.getByRole('textbox', { name: 'Tenant' }).fill('paging');
  await page.getByRole('textbox', { name: 'Tenant' }).press('Enter');
  await nav('Endpoints').click();
  await page.getByRole('heading', { name: 'Endpoints of paging' }).waitFor();
  await page.locator('tbody tr').nth(24).waitFor();
  assert.equal(await page.locator('tbody tr').count(), 25);
  await page.getByRole('button', { name: 'Next →' }).click();
  await page.getByText('Page 2').waitFor();
  await eventually('the second page', async () => (await page.locator('tbody tr').count()) === 5);
  assert.ok(await page.getByRole('button', { name: 'Next →' }).isDisabled(), 'no third page');
  await page.getByRole('button', { name: '← Previous' }).click();
  await page.getByText('Page 1').waitFor();
  await eventually('the first page again', async () => (await page.locator('tbody tr').count()) === 25);

  // A tenant key sees only its tenant, on the pages and by URL.
  const globex = await call('POST', '/v1/endpoints', { tenant: 'globex', url: `${receiver.url}/globex`, event_types: [] });
  assert.equal(globex.status, 201, JSON.stringify(globex.body));
  const key = await call('POST', '/v1/tenants/acme/api-keys', { name: 'console test' });
  assert.equal(key.status, 201, JSON.stringify(key.body));
  await page.getByRole('button', { name: 'Sign out' }).click();
  await tokenField.fill(key.body.key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('tenant key').waitFor();
  await nav('Endpoints').click();
  await page.locator('tr', { hasText: endpointId }).waitFor();
  assert.equal(await page.locator('tr', { hasText: '/globex' }).count(), 0, 'no other tenant\'s endpoint listed');
  await page.goto(`${base}/console/#/endpoints/${globex.body.id}`);
  await page.getByText('endpoint not found').waitFor();
  await page.goto(`${base}/console/#/dead-letters`);
  await page.locator('tbody tr', { hasText: dead.id }).waitFor();

  // A revoked key: the next page it loads sends the user back to sign in, with why.
  const revoked = await call('DELETE', `/v1/tenants/acme/api-keys/${key.body.id}`);
  assert.ok(revoked.status < 300, JSON.stringify(revoked.body));
  await nav('Deliveries').click();
  await page.getByText('The API no longer accepts this key').waitFor();
  await tokenField.waitFor();

  // A portal link the admin issues on the overview opens the tenant's pages alone and sends no
  // events; revoked there, it lets nobody in, saying so.
  await tokenField.fill(adminToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('textbox', { name: 'Tenant' }).fill('acme');
  await page.getByRole('textbox', { name: 'Tenant' }).press('Enter');
  await nav('Overview').click();
  const portalCard = page.getByRole('region', { name: 'Portal link' });
  await portalCard.getByLabel('Valid for').selectOption('0.25');
  await portalCard.getByRole('button', { name: 'Issue link' }).click();
  const address = (await portalCard.locator('.portal-link .id code').textContent()).trim();
  assert.ok(address.startsWith(`${base}/console/#portal=hsp_`), address);
  const link = { path: address.slice(base.length), token: address.split('#portal=')[1] };
  const linkId = (await portalCard.locator('code', { hasText: /^pl_/ }).textContent()).trim();
  await audit(page, 'overview with a portal link');
  const linkWho = await call('GET', '/v1/whoami', undefined, link.token);
  assert.equal(linkWho.body.key_id, `portal:${linkId}`);
  const lifetime = Date.parse(linkWho.body.expires_at) - Date.now();
  assert.ok(lifetime > 13 * 60_000 && lifetime <= 15 * 60_000, `a 15-minute link: ${linkWho.body.expires_at}`);
  const portalContext = await browser.newContext({ viewport: { width: 1366, height: 860 } });
  const portal = await portalContext.newPage();
  portal.setDefaultTimeout(SETTLE_MS);
  portal.on('pageerror', (err) => pageErrors.push(err.message));
  await portal.goto(`${base}${link.path}`);
  await portal.getByText('portal until').waitFor();
  assert.ok(!portal.url().includes('hsp_'), 'the link leaves the address once taken');
  const portalNav = portal.getByRole('navigation', { name: 'Pages' });
  assert.equal(await portalNav.getByRole('link', { name: 'Overview' }).count(), 0);
  await portal.locator('tr', { hasText: endpointId }).waitFor();
  assert.equal(await portal.locator('tr', { hasText: '/globex' }).count(), 0, 'no other tenant\'s endpoint in the portal');
  await audit(portal, 'portal');
  await portal.screenshot({ path: `${shots}/portal.png`, fullPage: true });
  await portalNav.getByRole('link', { name: 'Dead letters', exact: true }).click();
  await portal.locator('tbody tr', { hasText: dead.id }).waitFor();
  await portal.getByRole('button', { name: 'Dry run: all matching the filter' }).click();
  await portal.locator('.plan-count').waitFor();
  await portal.goto(`${base}/console/#/endpoints/${globex.body.id}`);
  await portal.getByText('endpoint not found').waitFor();
  const portalSend = await call('POST', '/v1/events', { tenant: 'acme', type: 'order.created', payload: {} }, link.token);
  assert.equal(portalSend.status, 403, 'a portal link sends no events');
  // The tab keeps the links it issued, past a move to another page (the address, which holds
  // the token, is not kept); one is revoked from there. A malformed id is refused as the API says.
  await nav('Endpoints').click();
  await nav('Overview').click();
  assert.equal(await portalCard.locator('.portal-link').count(), 0, 'the address is shown once');
  await portalCard.getByLabel('Another link\'s id').fill('pl_bad');
  await portalCard.getByRole('button', { name: 'Revoke by id' }).click();
  await portalCard.locator('.error', { hasText: 'must be a portal link\'s id' }).waitFor();
  await portalCard.getByRole('button', { name: `Revoke link ${linkId}` }).click();
  await portalCard.locator('.revoked').waitFor();
  assert.equal(dialogs.at(-1), `Revoke the portal link ${linkId} into acme's pages? Whoever has it is let in no more.`,
    'the revocation asks first');
  await portalNav.getByRole('link', { name: 'Endpoints', exact: true }).click();
  await portal.getByText('this portal link was revoked').waitFor();
  await portal.getByLabel('Admin token or tenant API key').waitFor();
  await portalContext.close();

  // An altered link lets nobody in, and says so.
  const altered = await browser.newContext();
  const stranger = await altered.newPage();
  const token = link.token;
  await stranger.goto(`${base}/console/#portal=${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`);
  await stranger.getByText('this portal link is not valid').waitFor();
  await stranger.getByLabel('Admin token or tenant API key').waitFor();
  await altered.close();

  assert.deepEqual(pageErrors, [], 'no script errors on any page');
  assert.deepEqual(accessibilityFindings, [], 'no WCAG 2.1 A or AA finding on any page');
  console.log(`console browser test passed; screenshots in ${shots}`);
} finally {
  await browser.close();
  receiver.close();
}
