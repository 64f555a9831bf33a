// The page's state: what the server sent (the map), what the reader asked to
// see (the view), and the outcome of the last render. Plain data and the
// server's address and clock: every other module reads it.

export const KINDS = ['pod-to-pod', 'service', 'external', 'apiserver', 'node', 'ip'];

export const $ = (id) => document.getElementById(id);

/** The page's token (…/?token=…), sent with every request to the API. */
export const token = new URLSearchParams(location.search).get('token');

/** What the server sent: every edge by id, and its clock. */
export const map = { edges: new Map(), clockOffset: 0, source: '', clusters: [], snapshots: 0 };

/** What the reader asked to see. */
export const view = {
  group: 'none', aggregate: false, namespace: '', workload: '', label: '',
  kinds: new Set(KINDS), changes: 'none', includeExpired: false,
  time: null,            // epoch seconds, or null: follow now
  search: '',
  collapsed: new Set(),  // group keys drawn as one node
  page: 0, sort: { key: 'client', dir: 1 },
  selected: null,        // the node (real or drawn) whose details are shown
};

/** The outcome of the last render, for the details, the search and the test hooks.
 *  render() updates it in place: other modules cannot assign what they import. */
export const last = { calls: [], drawing: { nodes: new Map(), edges: new Map(), boxes: new Map() }, drawnOf: new Map() };

export function serverNow() {
  return Date.now() / 1000 + map.clockOffset;
}

/** A URL of the API, with the page's token: an EventSource cannot send headers. */
export function apiUrl(path, params = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  if (token !== null) url.searchParams.set('token', token);
  return url.href;
}
