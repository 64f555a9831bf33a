// The event stream from api/events: a `snapshot` of every edge, then a
// `change` per edge added, updated or removed, and a `ping` with the server's
// clock. Also the status line and the notice, which say how the stream is.

import { $, map, view, token, apiUrl } from './state.js';
import { numbers } from './dom.js';
import { countWorkloads } from './filters.js';
import { render, scheduleRender, showTime } from './render.js';

const LARGE_MAP = 1500;        // workloads beyond which the first view is aggregated

let stream = null;
let retryMs = 1000;

export function connect() {
  stream = new EventSource(apiUrl('api/events'));
  stream.addEventListener('snapshot', (event) => receive(event, onSnapshot));
  stream.addEventListener('change', (event) => receive(event, onChange));
  stream.addEventListener('ping', (event) => receive(event, onPing));
  stream.addEventListener('error', onStreamError);
}

function receive(event, handler) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch (error) {
    console.error('callmap: skipped an event that is not JSON', error);
    return;
  }
  handler(data);
}

function onStreamError() {
  if (stream.readyState === EventSource.CONNECTING) {
    setStatus('reconnecting', 'reconnecting…');  // the browser retries by itself
    return;
  }
  // Closed: the server answered with an error, and EventSource does not say
  // which. Ask once, so a bad token is told apart from a server that is down.
  stream.close();
  statusOfEvents().then((status) => {
    if (status === 401) {
      setStatus('unauthorized', 'unauthorized');
      document.body.dataset.state = 'unauthorized';
      showNotice(token === null
        ? 'This server wants a token: open the page as …/?token=YOUR-TOKEN.'
        : 'The token in the address was refused: check it and reload.');
      return;
    }
    setStatus('reconnecting', 'reconnecting…');
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 30000);
  });
}

/** The HTTP status of api/events (0 when unreachable); the body is not read. */
async function statusOfEvents() {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 5000);
  try {
    return (await fetch(apiUrl('api/events'), { signal: abort.signal, cache: 'no-store' })).status;
  } catch {
    return 0;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

export function setStatus(state, text) {
  const status = $('status');
  status.dataset.state = state;
  status.textContent = text;
}

function onSnapshot(data) {
  if (map.snapshots === 0) performance.mark('callmap:snapshot-received');  // render time = first-render - this
  map.edges = new Map((data.edges || []).map((edge) => [edge.id, edge]));
  map.clockOffset = data.now - Date.now() / 1000;
  map.source = String(data.source ?? '');
  map.clusters = data.clusters || [];
  retryMs = 1000;
  setStatus('live', 'live');
  $('source').textContent = `from ${map.source}` +
    (map.clusters.length ? ` · clusters: ${map.clusters.join(', ')}` : '');

  const first = map.snapshots++ === 0;
  if (first) {
    const workloads = countWorkloads([...map.edges.values()]);
    if (workloads > LARGE_MAP) {
      // Thousands of nodes draw slowly and read badly: start from namespaces.
      view.aggregate = $('aggregate').checked = true;
      showNotice(`This map has ${numbers.format(workloads)} workloads, so it is drawn one node per ` +
        'namespace. Pick a namespace and untick “Aggregate to namespaces” to see its workloads.');
    }
  }
  render();
  if (first) {
    document.body.dataset.state = 'ready';
    performance.mark('callmap:first-render');
  }
}

function onChange(data) {
  if (data.edge) map.edges.set(data.edge.id, data.edge);
  else if (data.removed !== undefined) map.edges.delete(data.removed);
  scheduleRender();
}

function onPing(data) {
  map.clockOffset = data.now - Date.now() / 1000;
  showTime();
  if (view.changes !== 'none') scheduleRender();  // "new" is relative to now
}

export function showNotice(text) {
  $('notice').textContent = text;
  $('notice').hidden = !text;
}
