// The console's frame: sign-in, the caller it signed in as, navigation and the page the
// address names (after `#`, so the API serves one file for every page).
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, hasToken, signIn, signOut, takePortalLink, whenSignedOut, ApiError } from './api.js';
import { ErrorBox, Time } from './components.jsx';
import { Overview } from './pages/overview.jsx';
import { Endpoints, EndpointDetail } from './pages/endpoints.jsx';
import { Deliveries, DeliveryDetail } from './pages/deliveries.jsx';
import { DeadLetters, BatchDetail } from './pages/dead_letters.jsx';

const TENANT_KEY = 'hookstream.tenant';

/** The page and its argument from `#/page/arg?query`. */
function parseRoute() {
  const hash = window.location.hash.replace(/^#\/?/, '');
  const [pathPart, queryPart = ''] = hash.split('?');
  const [page = 'overview', arg = null] = pathPart.split('/').filter(Boolean);
  return { page, arg, query: Object.fromEntries(new URLSearchParams(queryPart)) };
}

function useRoute() {
  const [route, setRoute] = useState(parseRoute);
  useEffect(() => {
    const update = () => setRoute(parseRoute());
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return route;
}

function SignIn({ message, onSignedIn }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    signIn(token.trim());
    try {
      onSignedIn(await api('GET', '/v1/whoami'));
    } catch (err) {
      if (err.status !== 401) signOut();
      setError(err.status === 401 ? new ApiError(401, { detail: 'This token or key is not accepted.' }) : err);
    }
  };
  return (
    <main class="signin">
      <h1>Hookstream console</h1>
      {message && <p class="notice" role="status">{message}</p>}
      <form onSubmit={submit}>
        <label for="token">Admin token or tenant API key</label>
        <input id="token" type="password" autocomplete="current-password" required
          value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <button type="submit">Sign in</button>
      </form>
      <ErrorBox error={error} />
      <p class="muted">The key stays in this tab only, and the console can do no more than the key can.</p>
    </main>
  );
}

/** The admin's tenant: the pages show this tenant's things (Enter or leaving the field applies). */
function TenantChooser({ tenant, onChoose }) {
  const [value, setValue] = useState(tenant);
  const apply = (event) => {
    event.preventDefault();
    onChoose(value.trim());
  };
  return (
    <form class="tenant" onSubmit={apply} aria-label="Choose tenant">
      <label>
        Tenant{' '}
        <input value={value} size="14" placeholder="all tenants"
          onInput={(e) => setValue(e.currentTarget.value)} onBlur={apply} />
      </label>
    </form>
  );
}

const PAGES = [
  ['overview', 'Overview'],
  ['endpoints', 'Endpoints'],
  ['deliveries', 'Deliveries'],
  ['dead-letters', 'Dead letters'],
];

/** The pages a portal link opens: its tenant's endpoints, deliveries and dead letters. */
const PORTAL_PAGES = PAGES.filter(([name]) => name !== 'overview');

function Shell({ who, onSignOut }) {
  const route = useRoute();
  const isAdmin = who.role === 'admin';
  const isPortal = who.role === 'portal';
  const pages = isPortal ? PORTAL_PAGES : PAGES;
  const [tenant, setTenant] = useState(
    isAdmin ? sessionStorage.getItem(TENANT_KEY) || '' : who.tenant,
  );
  const chooseTenant = (value) => {
    setTenant(value);
    sessionStorage.setItem(TENANT_KEY, value);
  };
  const context = { who, isAdmin, isPortal, tenant, route };
  let page;
  switch (route.page) {
    case 'endpoints':
      page = route.arg ? <EndpointDetail {...context} id={route.arg} /> : <Endpoints {...context} />;
      break;
    case 'deliveries':
      page = route.arg ? <DeliveryDetail {...context} id={route.arg} /> : <Deliveries {...context} />;
      break;
    case 'dead-letters':
      page = <DeadLetters {...context} />;
      break;
    case 'batches':
      page = <BatchDetail {...context} id={route.arg} />;
      break;
    default:
      page = isPortal ? <Endpoints {...context} /> : <Overview {...context} />;
  }
  return (
    <>
      <header class="top">
        <a class="brand" href="#/overview">Hookstream</a>
        <nav aria-label="Pages">
          {pages.map(([name, label]) => (
            <a href={`#/${name}`} aria-current={route.page === name ? 'page' : undefined}>{label}</a>
          ))}
        </nav>
        <div class="who">
          {isAdmin ? (
            <TenantChooser tenant={tenant} onChoose={chooseTenant} />
          ) : (
            <span>Tenant <strong>{who.tenant}</strong></span>
          )}
          {isPortal
            ? <span class="role">portal until <Time value={who.expires_at} /></span>
            : <span class="role">{isAdmin ? 'admin' : 'tenant key'}</span>}
          <button type="button" onClick={onSignOut}>{isPortal ? 'Leave' : 'Sign out'}</button>
        </div>
      </header>
      <main id="main">{page}</main>
    </>
  );
}

function App() {
  const [who, setWho] = useState(null);
  const [checking, setChecking] = useState(hasToken() || window.location.hash.startsWith('#portal='));
  const [message, setMessage] = useState(null);
  useEffect(() => {
    whenSignedOut((text) => {
      setWho(null);
      setMessage(text || null);
    });
    takePortalLink();
    if (!hasToken()) {
      // An address that looked like a portal link but was not one: nothing to check.
      setChecking(false);
      return;
    }
    api('GET', '/v1/whoami')
      .then(setWho)
      .catch(() => {})
      .finally(() => setChecking(false));
  }, []);
  if (checking) return <p class="muted">Signing in…</p>;
  if (!who) {
    return <SignIn message={message} onSignedIn={(w) => { setMessage(null); setWho(w); }} />;
  }
  return <Shell who={who} onSignOut={() => signOut('Signed out.')} />;
}

render(<App />, document.getElementById('app'));
