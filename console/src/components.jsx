// Small pieces every page uses: times, ids, errors, status chips and paged lists.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, withQuery } from './api.js';

const LOCAL_TIME = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
});

/** `datetime-local` input text (the viewer's zone) as RFC 3339 in UTC, as the API takes it. */
export function toRfc3339(local) {
  if (!local) return undefined;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? local : date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A time in the viewer's zone; its UTC value on hover. */
export function Time({ value }) {
  if (!value) return <span class="muted">—</span>;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return <span>{value}</span>;
  return <time datetime={value} title={`${date.toISOString()} (UTC)`}>{LOCAL_TIME.format(date)}</time>;
}

/** An id, with a button that copies it (`label`: the button's name, for a value too long or
 * too secret to be read out). */
export function Id({ value, href, label }) {
  const [copied, setCopied] = useState(false);
  const shown = useRef(null);
  if (!value) return <span class="muted">—</span>;
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      // No clipboard (a page not served over https or localhost): select it for Ctrl-C.
      const selection = window.getSelection();
      const range = document.createRange();
      range.selectNodeContents(shown.current);
      selection.removeAllRanges();
      selection.addRange(range);
    }
  };
  return (
    <span class="id">
      {href ? <a href={href}><code ref={shown}>{value}</code></a> : <code ref={shown}>{value}</code>}
      <button type="button" class="copy" onClick={copy} aria-label={label ?? `Copy ${value}`} title="Copy">
        {copied ? 'copied' : 'copy'}
      </button>
    </span>
  );
}

/** The API's problem text, shown where the action was. */
export function ErrorBox({ error }) {
  if (!error) return null;
  const field = error.problem?.field ? ` (field: ${error.problem.field})` : '';
  return <p class="error" role="alert">{error.message}{field}</p>;
}

export function Chip({ kind = 'neutral', children }) {
  return <span class={`chip chip-${kind}`}>{children}</span>;
}

/** Loads `path` now and whenever `reload` is called; `{data, error, loading, reload}`. */
export function useLoad(path) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const reload = useCallback(async () => {
    if (!path) return;
    setState((s) => ({ ...s, loading: true }));
    try {
      setState({ data: await api('GET', path), error: null, loading: false });
    } catch (error) {
      setState({ data: null, error, loading: false });
    }
  }, [path]);
  useEffect(() => { reload(); }, [reload]);
  return { ...state, reload };
}

export const PAGE_SIZE = 25;

/**
 * One page of a listing the API pages with `after` cursors, and the way back and forth.
 * A new `path` or `query` starts again from the first page.
 */
export function usePaged(path, query) {
  const key = JSON.stringify([path, query]);
  const [cursors, setCursors] = useState([null]);
  useEffect(() => setCursors([null]), [key]);
  const after = cursors[cursors.length - 1];
  const page = useLoad(path ? withQuery(path, { ...query, limit: PAGE_SIZE, after }) : null);
  return {
    ...page,
    items: page.data?.data ?? [],
    page: cursors.length,
    next: page.data?.next ? () => setCursors([...cursors, page.data.next]) : null,
    previous: cursors.length > 1 ? () => setCursors(cursors.slice(0, -1)) : null,
  };
}

export function Pager({ paged, label }) {
  return (
    <nav class="pager" aria-label={`${label} pages`}>
      <button type="button" onClick={paged.previous} disabled={!paged.previous}>← Previous</button>
      <span>Page {paged.page}</span>
      <button type="button" onClick={paged.next} disabled={!paged.next}>Next →</button>
    </nav>
  );
}

/** Runs an action, keeping its error to show and telling whether it is running. */
export function useAction() {
  const [state, setState] = useState({ running: false, error: null });
  const run = async (action) => {
    setState({ running: true, error: null });
    try {
      const result = await action();
      setState({ running: false, error: null });
      return result;
    } catch (error) {
      setState({ running: false, error });
      return undefined;
    }
  };
  return { ...state, run };
}
