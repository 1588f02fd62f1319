// Portal links (admin only): a short-lived link into one tenant's pages, for a platform to give
// its customer; issued here, its address shown to copy, and revocable before it expires. The
// API keeps no list of links: this tab keeps the ids it issued (not the links themselves), so
// they can be revoked after moving on; any other link is revoked by its id (`pl_…`, also in the
// `created_by` of what its holder made).
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { ErrorBox, Id, Time, useAction } from '../components.jsx';

const LIFETIMES = [['0.25', '15 minutes'], ['1', '1 hour'], ['8', '8 hours'], ['24', '24 hours']];
const KEPT_KEY = 'hookstream.portal-links';

/** The links this tab issued: { id, tenant, expires_at, revokedAt }, newest first. */
function keptLinks() {
  try {
    return JSON.parse(sessionStorage.getItem(KEPT_KEY) ?? '[]');
  } catch {
    return [];
  }
}

function keepLinks(links) {
  // Expired ones need no revoking.
  const live = links.filter((link) => Date.parse(link.expires_at) > Date.now());
  sessionStorage.setItem(KEPT_KEY, JSON.stringify(live));
  return live;
}

export function PortalLinks({ tenant }) {
  const [hours, setHours] = useState('1');
  const [links, setLinks] = useState(() => keepLinks(keptLinks()));
  // The address of the link just issued (it holds the token): shown here only, never kept.
  const [fresh, setFresh] = useState(null);
  const [otherId, setOtherId] = useState('');
  const action = useAction();
  if (!tenant) return null;
  const path = (id) => `/v1/tenants/${encodeURIComponent(tenant)}/portal-links${id ? `/${id}` : ''}`;
  const issue = async (event) => {
    event.preventDefault();
    const link = await action.run(() => api('POST', path(), { expires_in: Math.round(Number(hours) * 3600) }));
    if (!link) return;
    setFresh({ id: link.id, address: `${window.location.origin}${link.path}` });
    setLinks(keepLinks([{ id: link.id, tenant: link.tenant, expires_at: link.expires_at, revokedAt: null }, ...keptLinks()]));
  };
  const revoke = async (id) => {
    if (!window.confirm(`Revoke the portal link ${id} into ${tenant}'s pages? Whoever has it is let in no more.`)) return false;
    const done = await action.run(() => api('DELETE', path(id)));
    if (done === undefined) return false;
    const at = new Date().toISOString();
    setLinks(keepLinks(keptLinks().map((link) => (link.id === id ? { ...link, revokedAt: at } : link))));
    return true;
  };
  const revokeOther = async (event) => {
    event.preventDefault();
    if (await revoke(otherId.trim())) setOtherId('');
  };
  const ours = links.filter((link) => link.tenant === tenant);
  return (
    <div class="card" role="region" aria-label="Portal link">
      <h2>Portal link for {tenant}</h2>
      <form class="actions" onSubmit={issue} aria-label="Issue a portal link">
        <label>Valid for <select value={hours} onChange={(e) => setHours(e.currentTarget.value)}>
          {LIFETIMES.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
        </select></label>
        <button type="submit" disabled={action.running}>Issue link</button>
      </form>
      <ErrorBox error={action.error} />
      {fresh ? (
        <div class="portal-link">
          <p>Give this address to {tenant}; it lets in whoever has it (shown this once):</p>
          <p class="url"><Id value={fresh.address} label="Copy the link's address" /></p>
        </div>
      ) : <p class="muted">Opens this tenant's endpoints, deliveries and dead letters, and nothing else.</p>}
      {ours.length ? (
        <table class="portal-links">
          <caption>Links issued in this tab</caption>
          <thead><tr><th>Link</th><th>Expires</th><th>State</th></tr></thead>
          <tbody>
            {ours.map((link) => (
              <tr key={link.id}>
                <td><code>{link.id}</code></td>
                <td><Time value={link.expires_at} /></td>
                <td>{link.revokedAt
                  ? <span class="revoked">revoked <Time value={link.revokedAt} /></span>
                  : <button type="button" class="danger" onClick={() => revoke(link.id)} disabled={action.running}
                    aria-label={`Revoke link ${link.id}`}>Revoke</button>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <form class="actions" onSubmit={revokeOther} aria-label="Revoke a portal link by its id">
        <label>Another link's id <input value={otherId} placeholder="pl_…" required
          onInput={(e) => setOtherId(e.currentTarget.value)} /></label>
        <button type="submit" class="danger" disabled={action.running}>Revoke by id</button>
      </form>
    </div>
  );
}
