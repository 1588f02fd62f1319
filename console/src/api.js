// Calls to the Hookstream API on this origin, with the token the user signed in with. The
// console adds no rights: whatever a page shows, the API decided the caller may see.

const TOKEN_KEY = 'hookstream.token';

/** An API answer that was not a success, carrying the API's problem document. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `the API answered ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let token = sessionStorage.getItem(TOKEN_KEY);
let onSignedOut = () => {};

const PORTAL_PREFIX = 'hsp_';

function isPortalLink(text) {
  return Boolean(text?.startsWith(PORTAL_PREFIX));
}

/**
 * Takes a portal link's token from the address (`#portal=hsp_…`) as this tab's key, and
 * removes it from the address and the history, so it is not bookmarked or shared by accident.
 */
export function takePortalLink() {
  const match = window.location.hash.match(/^#portal=(hsp_[A-Za-z0-9_.-]+)$/);
  if (!match) return false;
  signIn(match[1]);
  window.history.replaceState(null, '', `${window.location.pathname}#/endpoints`);
  return true;
}

export function hasToken() {
  return Boolean(token);
}

/** Keeps the token for this tab only (sessionStorage: gone when the tab closes). */
export function signIn(newToken) {
  token = newToken;
  sessionStorage.setItem(TOKEN_KEY, newToken);
}

export function signOut(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  onSignedOut(message);
}

/** Called with a message when the API stops accepting the token (expired or revoked). */
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

/** `method path` with an optional JSON body; the parsed answer, or an ApiError. */
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, { title: 'Unreachable', detail: `the API did not answer: ${err.message}` });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text };
    }
  }
  if (response.status === 401) {
    // A portal link's refusal says why (expired, altered); a key's is the same for every cause.
    signOut(isPortalLink(token) && data?.detail
      ? `${data.detail}.`
      : 'The API no longer accepts this key (expired, revoked or mistyped): sign in again.');
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** `path` with the query's non-empty values. */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(name, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}
