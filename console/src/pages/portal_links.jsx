// Portal links (admin only): a short-lived link into one tenant's pages, for a platform to give
// its customer; issued here, each address shown to copy, and revocable before it expires. The
// links issued in this tab stay listed (the API keeps no list: only a revoked link's id).
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { ErrorBox, Id, Time, useAction } from '../components.jsx';

const LIFETIMES = [['0.25', '15 minutes'], ['1', '1 hour'], ['8', '8 hours'], ['24', '24 hours']];

export function PortalLinks({ tenant }) {
  const [hours, setHours] = useState('1');
  // Newest first: { link, revokedAt }.
  const [issued, setIssued] = useState([]);
  const action = useAction();
  if (!tenant) return null;
  const path = (id) => `/v1/tenants/${encodeURIComponent(tenant)}/portal-links${id ? `/${id}` : ''}`;
  const issue = async (event) => {
    event.preventDefault();
    const link = await action.run(() => api('POST', path(), { expires_in: Math.round(Number(hours) * 3600) }));
    if (link) setIssued([{ link, revokedAt: null }, ...issued]);
  };
  const revoke = async (link) => {
    if (!window.confirm(`Revoke this portal link into ${link.tenant}'s pages? Whoever has it is let in no more.`)) return;
    const done = await action.run(() => api('DELETE', path(link.id)));
    if (done === undefined) return;
    const at = new Date().toISOString();
    setIssued(issued.map((entry) => (entry.link.id === link.id ? { ...entry, revokedAt: at } : entry)));
  };
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
      {issued.length === 0
        ? <p class="muted">Opens this tenant's endpoints, deliveries and dead letters, and nothing else.</p>
        : issued.map(({ link, revokedAt }) => (
          <div class="portal-link" key={link.id}>
            <p>Give this address to {link.tenant}; it lets in whoever has it until <Time value={link.expires_at} />:</p>
            <p class="url"><Id value={`${window.location.origin}${link.path}`} label="Copy the link's address" /></p>
            <p>Link <code>{link.id}</code>{' '}
              {revokedAt
                ? <span class="revoked">revoked <Time value={revokedAt} /></span>
                : <button type="button" class="danger" onClick={() => revoke(link)} disabled={action.running}
                  aria-label={`Revoke link ${link.id}`}>Revoke</button>}
            </p>
          </div>
        ))}
    </div>
  );
}
