// The page of `callmap serve`: the service map, live, in a browser.
//
// The map arrives as server-sent events from api/events: a `snapshot` of every
// edge, then a `change` per edge added, updated or removed. The page keeps all
// the edges (expired ones too: "what changed" and the time slider need them)
// and derives everything it shows from them in one pass, render():
//
//   edges --filters--> calls (the table) --aggregation, groups--> drawing
//
// The drawing (Cytoscape.js) is updated by difference, never rebuilt: nodes
// keep their positions, and a new node is placed next to a neighbour, so one
// new call does not move the rest of the map.
//
// Names come from the network and may be hostile (a DNS name can hold
// "<script>"): text reaches the page through textContent and DOM APIs only,
// never innerHTML.

const LARGE_MAP = 1500;        // workloads beyond which the first view is aggregated
const PAGE_ROWS = 500;         // rows of the table per page
const COSE_NODES = 400;        // force layout up to this many nodes; grid blocks beyond
const LIST_LIMIT = 200;        // peers listed in the details before "and N more"
const MATCH_LIMIT = 50;        // search results listed before "and N more"
const EDGE_LABELS = 600;       // edges drawn with a label (ports, calls) up to this many
const RENDER_DELAY_MS = 80;    // changes arriving together are drawn together
const CHANGE_WINDOWS = { none: 0, hour: 3600, day: 86400 };
const KINDS = ['pod-to-pod', 'service', 'external', 'apiserver', 'node', 'ip'];
const POLICY_NAMES = { networkpolicy: 'NetworkPolicy', cilium: 'CiliumNetworkPolicy', intents: 'ClientIntents' };

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat('en');
const token = new URLSearchParams(location.search).get('token');

// --- state -----------------------------------------------------------------

/** What the server sent: every edge by id, and its clock. */
const map = { edges: new Map(), clockOffset: 0, source: '', clusters: [], snapshots: 0 };

/** What the reader asked to see. */
const view = {
  group: 'none', aggregate: false, namespace: '', workload: '', label: '',
  kinds: new Set(KINDS), changes: 'none', includeExpired: false,
  time: null,            // epoch seconds, or null: follow now
  search: '',
  collapsed: new Set(),  // group keys drawn as one node
  page: 0, sort: { key: 'client', dir: 1 },
  selected: null,        // the node (real or drawn) whose details are shown
};

/** The outcome of the last render, for the details, the search and the test hooks. */
let last = { calls: [], drawing: { nodes: new Map(), edges: new Map(), boxes: new Map() }, drawnOf: new Map() };

const positions = new Map();  // node id -> {x, y}: where a node was, to put it back there
const rings = new Map();      // anchor node id -> nodes placed around it so far
let layoutNext = false;       // the next render lays out everything again (grouping changed)

function serverNow() {
  return Date.now() / 1000 + map.clockOffset;
}

// --- the stream ------------------------------------------------------------

/** A URL of the API, with the page's token: an EventSource cannot send headers. */
function apiUrl(path, params = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  if (token !== null) url.searchParams.set('token', token);
  return url.href;
}

let stream = null;
let retryMs = 1000;

function connect() {
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

function setStatus(state, text) {
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

// --- filters: edges -> calls ---------------------------------------------------

/** The calls to show: [{edge, change}], change being "new", "expired" or "". */
function visibleCalls() {
  const at = view.time ?? Infinity;  // following now: every edge the server has is seen
  const span = CHANGE_WINDOWS[view.changes];
  const since = span ? (view.time ?? serverNow()) - span : null;
  const matches = compileFilters();
  const calls = [];
  for (const edge of map.edges.values()) {
    const change = changeAt(edge, at, since);
    if (change !== null && matches(edge)) calls.push({ edge, change });
  }
  return calls;
}

/** How an edge shows at time `at`, changes counted from `since`; null: not shown. */
function changeAt(edge, at, since) {
  if (edge.first_seen > at) return null;
  const isNew = since !== null && edge.first_seen >= since;
  if (edge.event !== 'expired' || edge.last_seen >= at) return isNew ? 'new' : '';
  if (since !== null && edge.last_seen >= since) return 'expired';
  return view.includeExpired ? 'expired' : null;
}

function compileFilters() {
  const { namespace, kinds } = view;
  const text = view.workload.trim().toLowerCase();
  const label = parseLabel(view.label);
  const hasText = (node) => node.id.toLowerCase().includes(text) ||
    String(node.label ?? '').toLowerCase().includes(text);
  const hasLabel = (node) => {
    const labels = node.labels || {};
    if (!Object.prototype.hasOwnProperty.call(labels, label.key)) return false;
    return label.value === null || labels[label.key] === label.value;
  };
  return (edge) => (kinds.has(edge.kind) || !KINDS.includes(edge.kind)) &&
    (!namespace || edge.client.namespace === namespace || edge.server.namespace === namespace) &&
    (!text || hasText(edge.client) || hasText(edge.server)) &&
    (!label || hasLabel(edge.client) || hasLabel(edge.server));
}

/** "key=value" or "key" (any value); null when empty. */
function parseLabel(text) {
  const term = text.trim();
  if (!term) return null;
  const at = term.indexOf('=');
  return at < 0 ? { key: term, value: null } : { key: term.slice(0, at).trim(), value: term.slice(at + 1).trim() };
}

function countWorkloads(calls) {
  const seen = new Set();
  for (const call of calls) {
    const edge = call.edge ?? call;
    if (edge.client.type === 'workload') seen.add(edge.client.id);
    if (edge.server.type === 'workload') seen.add(edge.server.id);
  }
  return seen.size;
}

// --- calls -> drawing: aggregation, groups, collapsed groups ----------------------

/** The id of a node's namespace, as a group and as an aggregated node. */
function namespaceKey(node) {
  return map.clusters.length > 1 && node.cluster ? `ns:${node.cluster}/${node.namespace}` : `ns:${node.namespace}`;
}

/** The group (box) a real node is drawn in, or null. */
function groupKey(node) {
  if (view.group === 'namespace' && !view.aggregate) return node.namespace ? namespaceKey(node) : null;
  if (view.group === 'cluster') return node.cluster ? `cluster:${node.cluster}` : null;
  return null;
}

function groupName(key) {
  return key.replace(/^(ns|cluster):/, '');
}

/** Where a real node is drawn: itself, its namespace, or its collapsed group. */
function drawnNode(node) {
  const group = groupKey(node);
  if (group !== null && view.collapsed.has(group)) {
    return { id: group, label: groupName(group), type: 'group', group: null, namespace: null };
  }
  if (view.aggregate && node.namespace) {
    const id = namespaceKey(node);
    return { id, label: groupName(id), type: 'namespace', group, namespace: node.namespace };
  }
  return { id: node.id, label: node.label || node.id, type: node.type, group, namespace: node.namespace };
}

/** The drawing of `calls`: nodes, edges (merged where nodes are), group boxes. */
function buildDrawing(calls) {
  const nodes = new Map(), edges = new Map(), boxes = new Map(), drawnOf = new Map();
  const place = (real) => {
    let id = drawnOf.get(real.id);
    if (id === undefined) {
      const drawn = drawnNode(real);
      id = drawn.id;
      drawnOf.set(real.id, id);
      if (!nodes.has(id)) nodes.set(id, { ...drawn, members: new Set() });
      nodes.get(id).members.add(real.id);
      if (drawn.group !== null) boxes.set(drawn.group, (boxes.get(drawn.group) ?? new Set()).add(id));
    }
    return id;
  };
  for (const { edge, change } of calls) {
    const source = place(edge.client), target = place(edge.server);
    const merged = source !== edge.client.id || target !== edge.server.id;
    const id = merged ? `merged:${source}->${target}` : edge.id;
    let drawn = edges.get(id);
    if (!drawn) {
      drawn = { id, source, target, merged, calls: 0, ports: new Set(), changes: new Set() };
      edges.set(id, drawn);
    }
    drawn.calls += 1;
    for (const port of edge.ports) drawn.ports.add(port);
    drawn.changes.add(change);
  }
  return { nodes, edges, boxes, drawnOf };
}

/** The drawing as Cytoscape elements, by id: boxes first, then nodes, then edges. */
function elementsOf(drawing) {
  const elements = new Map();
  for (const [key, members] of drawing.boxes) {
    const id = `box:${key}`;
    elements.set(id, { group: 'nodes', selectable: false, classes: '',
      data: { id, box: true, key, label: `${groupName(key)} (${members.size})` } });
  }
  for (const node of drawing.nodes.values()) {
    const size = node.members.size;
    const label = node.type === 'namespace' || node.type === 'group' ? `${node.label} (${size})` : shown(node.label);
    const data = { id: node.id, label, type: node.type, size, ns: node.namespace ?? '' };
    if (node.group !== null) data.parent = `box:${node.group}`;
    elements.set(node.id, { group: 'nodes', data, classes: '' });
  }
  // Labels on thousands of edges cannot be read, and measuring them costs seconds.
  const labelled = drawing.edges.size <= EDGE_LABELS;
  for (const edge of drawing.edges.values()) {
    const ports = [...edge.ports].sort((a, b) => a - b);
    const change = edge.changes.has('new') ? 'new' : edge.changes.size === 1 && edge.changes.has('expired') ? 'expired' : '';
    const width = Math.min(8, 1.5 + Math.log2(edge.calls));  // merged calls draw thicker
    const data = { id: edge.id, source: edge.source, target: edge.target, calls: edge.calls, width };
    if (labelled) {
      data.label = edge.merged ? `${edge.calls} call${edge.calls === 1 ? '' : 's'}`
        : ports.slice(0, 3).join(',') + (ports.length > 3 ? '…' : '');
    }
    elements.set(edge.id, { group: 'edges', classes: change, data });
  }
  return elements;
}

// --- the drawing ---------------------------------------------------------------

const STYLE = [
  { selector: 'node', style: {
    label: 'data(label)', 'font-size': 10, color: '#1f2933', 'text-valign': 'bottom',
    'text-margin-y': 3, 'text-wrap': 'ellipsis', 'text-max-width': '150px', 'min-zoomed-font-size': 5,
    width: 18, height: 18, 'background-color': '#3b6fb6', 'border-width': 1, 'border-color': '#ffffff' } },
  { selector: 'node[type = "service"]', style: { shape: 'diamond', 'background-color': '#7c5cc4' } },
  { selector: 'node[type = "external"]', style: { shape: 'hexagon', 'background-color': '#d9822b' } },
  { selector: 'node[type = "apiserver"]', style: { shape: 'star', 'background-color': '#c23b3b', width: 24, height: 24 } },
  { selector: 'node[type = "node"], node[type = "ip"]', style: {
    shape: 'round-rectangle', 'background-color': '#6b7280', width: 14, height: 14 } },
  { selector: 'node[type = "namespace"], node[type = "group"]', style: {
    shape: 'round-rectangle', 'background-color': '#2f855a', 'font-size': 12, 'font-weight': 'bold',
    width: 'mapData(size, 1, 100, 22, 64)', height: 'mapData(size, 1, 100, 22, 64)' } },
  { selector: 'node[?box]', style: {
    shape: 'round-rectangle', 'background-color': '#94a3b8', 'background-opacity': 0.08,
    'border-width': 1, 'border-color': '#94a3b8', 'text-valign': 'top', 'text-margin-y': -3,
    'font-size': 12, 'font-weight': 'bold', color: '#475569', padding: '12px' } },
  { selector: 'node.match', style: { 'border-width': 4, 'border-color': '#eab308' } },
  { selector: 'node:selected', style: { 'border-width': 4, 'border-color': '#111827' } },
  { selector: 'edge', style: {
    width: 'data(width)', 'line-color': '#a3acb9', 'target-arrow-color': '#a3acb9',
    'target-arrow-shape': 'triangle', 'arrow-scale': 0.9, 'curve-style': 'bezier' } },
  { selector: 'edge[label]', style: {  // only where labelled: styling a label costs, even an empty one
    label: 'data(label)', 'font-size': 8, 'min-zoomed-font-size': 9, color: '#52606d',
    'text-rotation': 'autorotate', 'text-background-color': '#ffffff', 'text-background-opacity': 0.8 } },
  { selector: 'edge.new', style: { 'line-color': '#15803d', 'target-arrow-color': '#15803d', width: 3 } },
  { selector: 'edge.expired', style: { 'line-style': 'dashed', 'line-color': '#c81e1e', 'target-arrow-color': '#c81e1e' } },
  { selector: 'edge.incident', style: { 'line-color': '#1d4ed8', 'target-arrow-color': '#1d4ed8', 'z-index': 10 } },
];

let cy = null;
let edgeCurve = 'bezier';

function createDrawing() {
  cy = cytoscape({
    container: $('map'), style: STYLE, elements: [],
    minZoom: 0.02, maxZoom: 4, boxSelectionEnabled: false, selectionType: 'single',
  });
  cy.on('tap', 'node', (event) => {
    if (!event.target.data('box')) showDetails(event.target.id());
  });
  cy.on('dbltap', 'node', (event) => {
    const node = event.target;
    if (node.data('box')) toggleGroup(node.data('key'));
    else if (node.data('type') === 'group') toggleGroup(node.id());
  });
}

/** Make the drawing show `elements`, keeping every node that stays where it is. */
function updateDrawing(elements) {
  // Cytoscape cannot move a node between boxes in place: such nodes go and come back.
  const gone = cy.elements().filter((element) => {
    const wanted = elements.get(element.id());
    if (!wanted) return true;
    if (element.isEdge()) return wanted.data.source !== element.data('source') || wanted.data.target !== element.data('target');
    return (wanted.data.parent ?? null) !== (element.data('parent') ?? null);
  });
  remember(gone.union(gone.descendants()));
  const added = [];
  cy.batch(() => {
    cy.remove(gone);
    for (const wanted of elements.values()) {
      const element = cy.getElementById(wanted.data.id);
      if (element.nonempty()) {
        refresh(element, wanted);
        continue;
      }
      const position = positions.get(wanted.data.id);
      const node = cy.add({ ...wanted, position: position ?? { x: 0, y: 0 } });
      node.scratch('callmap', signature(wanted));
      if (wanted.group === 'nodes' && !wanted.data.box && !position) added.push(node);
    }
  });
  const curve = cy.edges().length > 2000 ? 'straight' : 'bezier';  // bezier costs at scale
  if (curve !== edgeCurve) {
    edgeCurve = curve;
    cy.style().selector('edge').style('curve-style', curve).update();
  }
  placeNew(cy.collection(added));
}

function signature(wanted) {
  return JSON.stringify([wanted.data, wanted.classes]);
}

/** Update an element whose data or classes changed (most renders change few). */
function refresh(element, wanted) {
  const sig = signature(wanted);
  if (element.scratch('callmap') === sig) return;
  element.scratch('callmap', sig);
  element.data(wanted.data);
  element.classes(wanted.classes);
}

/** Keep the positions of nodes leaving the drawing; a box's centre is where its
 *  collapsed node will go. */
function remember(elements) {
  elements.nodes().forEach((node) => {
    if (node.data('box')) {
      const box = node.boundingBox();
      positions.set(node.data('key'), { x: (box.x1 + box.x2) / 2, y: (box.y1 + box.y2) / 2 });
    } else {
      positions.set(node.id(), { ...node.position() });
    }
  });
}

function leaves() {
  return cy.nodes().filter((node) => !node.data('box'));
}

/** Place nodes new to the drawing: around a neighbour already placed, else laid
 *  out on their own beside the drawing. Everything else stays put. */
function placeNew(added) {
  const settled = leaves().difference(added);
  if (layoutNext || (added.nonempty() && (settled.empty() || added.length > Math.max(30, settled.length)))) {
    layoutAll();
    return;
  }
  const pending = new Set(added.map((node) => node.id()));
  let progress = true;
  while (pending.size && progress) {  // a chain of new nodes is placed link by link
    progress = false;
    for (const id of [...pending]) {
      const node = cy.getElementById(id);
      const anchor = anchorOf(node, pending);
      if (anchor) {
        node.position(besides(anchor));
        pending.delete(id);
        progress = true;
      }
    }
  }
  if (pending.size) layoutApart(cy.collection([...pending].map((id) => cy.getElementById(id))), settled);
}

/** A placed node to put `node` next to: a neighbour or sibling in its box
 *  (a node alone in a new box has none), else any neighbour outside boxes. */
function anchorOf(node, pending) {
  const placed = (other) => !pending.has(other.id()) && !other.data('box');
  const neighbours = node.neighborhood().nodes().filter(placed);
  const parent = node.parent();
  if (parent.nonempty()) {
    const inBox = neighbours.filter((other) => other.parent().same(parent));
    if (inBox.nonempty()) return inBox[0];
    const siblings = parent.children().filter(placed);
    return siblings.nonempty() ? siblings[0] : null;
  }
  const outside = neighbours.filter((other) => other.parent().empty());
  return outside.nonempty() ? outside[0] : neighbours.nonempty() ? neighbours[0] : null;
}

/** A free spot around `anchor`, on a golden-angle spiral: the n-th node placed
 *  around the same anchor goes a little further out, in another direction. */
function besides(anchor) {
  const centre = anchor.position();
  const others = leaves().filter((node) => node.id() !== anchor.id()).map((node) => node.position());
  for (let tries = 0; tries < 24; tries++) {
    const n = (rings.get(anchor.id()) ?? 0) + 1;
    rings.set(anchor.id(), n);
    const angle = n * 2.39996, radius = 70 + 22 * Math.sqrt(n);
    const spot = { x: centre.x + radius * Math.cos(angle), y: centre.y + radius * Math.sin(angle) };
    if (!others.some((p) => Math.abs(p.x - spot.x) < 36 && Math.abs(p.y - spot.y) < 30)) return spot;
  }
  return { x: centre.x + 90, y: centre.y + 90 };
}

/** Lay out new nodes that have no placed neighbour, box by box: where the box's
 *  collapsed node was, or to the right of the drawing. */
function layoutApart(nodes, settled) {
  const byBox = new Map();
  nodes.forEach((node) => {
    const key = node.data('parent') ?? '';
    if (!byBox.has(key)) byBox.set(key, []);
    byBox.get(key).push(node);
  });
  const drawn = settled.nonempty() ? settled.boundingBox() : { x1: 0, x2: 0, y1: 0, y2: 0 };
  let top = drawn.y1;
  for (const [box, members] of byBox) {
    const block = shapeBlock(members, true);
    const centre = box ? positions.get(box.slice('box:'.length)) : undefined;
    const origin = centre ? { x: centre.x - block.w / 2, y: centre.y - block.h / 2 } : { x: drawn.x2 + 120, y: top };
    if (!centre) top += block.h + BLOCK_GAP;
    for (const node of members) {
      const at = block.at.get(node.id());
      node.position({ x: origin.x + at.x, y: origin.y + at.y });
    }
  }
}

/** Lay out the whole drawing again: one force layout while it is small and has
 *  no boxes; else one block per box (or namespace), each laid out on its own. */
function layoutAll() {
  layoutNext = false;
  rings.clear();
  positions.clear();  // from an older layout: they would not fit the new one
  const count = leaves().length;
  if (count === 0) return;
  const found = count <= COSE_NODES && cy.nodes('[?box]').empty()
    ? Object.fromEntries(forceShape(leaves(), cy.edges()))
    : blockPositions();
  const options = { name: 'preset', positions: found, fit: true, padding: 30, animate: false };
  cy.layout(options).run();
  if (cy.zoom() > 1.2) {  // a handful of nodes: fitting them would blow them up
    cy.zoom(1.2);
    cy.center();
  }
}

function coseOptions(count) {
  return { name: 'cose', animate: false, randomize: true,
    idealEdgeLength: () => 45, nodeRepulsion: () => 9000, edgeElasticity: () => 100,
    gravity: 30, numIter: count > 150 ? 250 : count > 50 ? 500 : 1000, componentSpacing: 60 };
}

const BLOCK_GAP = 90;     // between blocks
const GRID_X = 120;       // between nodes of a grid block: room for a label...
const GRID_Y = 60;        // ...and for the label below
const COSE_BLOCK = 150;   // blocks up to this many nodes get a force layout...
const COSE_TOTAL = 2000;  // ...while the drawing has no more nodes than this

/** Positions by blocks (a box, else a namespace), packed in rows, largest first:
 *  fast at any size, and every group stays together. */
function blockPositions() {
  const blocks = new Map();
  const all = leaves();
  all.forEach((node) => {
    const key = node.data('parent') ?? (node.data('ns') || node.data('type'));
    if (!blocks.has(key)) blocks.set(key, []);
    blocks.get(key).push(node);
  });
  const shaped = [...blocks.values()].map((nodes) => shapeBlock(nodes, all.length <= COSE_TOTAL));
  shaped.sort((a, b) => b.w * b.h - a.w * a.h);
  const area = shaped.reduce((sum, block) => sum + (block.w + BLOCK_GAP) * (block.h + BLOCK_GAP), 0);
  const rowWidth = Math.max(Math.sqrt(area) * 1.3, shaped[0].w);
  const found = {};
  let x = 0, y = 0, rowHeight = 0;
  for (const block of shaped) {
    if (x > 0 && x + block.w > rowWidth) {
      x = 0; y += rowHeight + BLOCK_GAP; rowHeight = 0;
    }
    for (const [id, at] of block.at) found[id] = { x: x + at.x, y: y + at.y };
    x += block.w + BLOCK_GAP;
    rowHeight = Math.max(rowHeight, block.h);
  }
  return found;
}

/** One block's positions from (0, 0), and its size: a force layout of the calls
 *  inside it when it is small enough, else a grid by name. */
function shapeBlock(nodes, forceAllowed) {
  const members = cy.collection(nodes);
  const inner = members.edgesWith(members);
  const at = forceAllowed && nodes.length > 2 && nodes.length <= COSE_BLOCK && inner.nonempty()
    ? forceShape(members, inner)
    : gridShape(nodes);
  const xs = [...at.values()].map((p) => p.x), ys = [...at.values()].map((p) => p.y);
  const left = Math.min(...xs), top = Math.min(...ys);
  for (const p of at.values()) {
    p.x -= left;
    p.y -= top;
  }
  return { at, w: Math.max(...xs) - left + GRID_X, h: Math.max(...ys) - top + GRID_Y };
}

/** A force layout of some nodes alone, on a headless copy: cose cannot lay out
 *  the children of a box without the box, and the copy can leave calls out. */
function forceShape(members, edges) {
  const copy = cytoscape({
    headless: true, styleEnabled: true,
    style: [{ selector: 'node', style: { width: 'data(side)', height: 'data(side)' } }],
    elements: [
      ...members.map((node) => ({ group: 'nodes', data: { id: node.id(), side: node.outerWidth() } })),
      ...skeleton(edges).map(({ source, target }, i) => ({ group: 'edges', data: { id: `s${i}`, source, target } })),
    ],
  });
  const side = Math.sqrt(members.length) * 70;
  copy.layout({ ...coseOptions(members.length), fit: false, boundingBox: { x1: 0, y1: 0, w: side, h: side } }).run();
  const at = new Map(copy.nodes().map((node) => [node.id(), { ...node.position() }]));
  copy.destroy();
  return at;
}

const SKELETON_DEGREE = 6;

/** The calls a force layout pulls by: one per pair of nodes, the busiest pairs
 *  first, until each node has a few. A dense map (thousands of calls between a
 *  hundred namespaces) then lays out in a fraction of the time, still by its
 *  strongest ties. */
function skeleton(edges) {
  const pairs = new Map();
  edges.forEach((edge) => {
    const [source, target] = [edge.data('source'), edge.data('target')].sort();
    if (source === target) return;
    const key = `${source}\n${target}`;
    const pair = pairs.get(key) ?? { source, target, weight: 0 };
    pair.weight += edge.data('calls');
    pairs.set(key, pair);
  });
  const degree = new Map();
  const kept = [];
  for (const pair of [...pairs.values()].sort((a, b) => b.weight - a.weight)) {
    const a = degree.get(pair.source) ?? 0, b = degree.get(pair.target) ?? 0;
    if (a >= SKELETON_DEGREE && b >= SKELETON_DEGREE) continue;
    degree.set(pair.source, a + 1);
    degree.set(pair.target, b + 1);
    kept.push(pair);
  }
  return kept;
}

function gridShape(nodes) {
  const columns = Math.ceil(Math.sqrt(nodes.length));
  const sorted = [...nodes].sort((a, b) => String(a.data('label')).localeCompare(String(b.data('label'))));
  return new Map(sorted.map((node, i) => [node.id(), {
    x: (i % columns) * GRID_X, y: Math.floor(i / columns) * GRID_Y }]));
}

/** Show the selected node and the calls it is on; match the search. */
function highlight() {
  cy.batch(() => {
    cy.elements('.incident').removeClass('incident');
    cy.nodes('.match').removeClass('match');
    for (const id of searchMatches().drawn) cy.getElementById(id).addClass('match');
    const selected = drawnId(view.selected);
    const node = selected ? cy.getElementById(selected) : cy.collection();
    cy.nodes(':selected').difference(node).unselect();
    if (node.nonempty()) {
      node.select();
      node.connectedEdges().addClass('incident');
    }
  });
}

function drawnId(id) {
  if (id === null) return null;
  return last.drawnOf.get(id) ?? id;
}

// --- one pass: filters, drawing, table, lists ------------------------------------

let renderTimer = null;

function scheduleRender() {
  if (renderTimer === null) renderTimer = setTimeout(render, RENDER_DELAY_MS);
}

function render() {
  clearTimeout(renderTimer);
  renderTimer = null;
  refreshChoices();
  const calls = visibleCalls();
  const drawing = buildDrawing(calls);
  last = { calls, drawing, drawnOf: drawing.drawnOf };
  updateDrawing(elementsOf(drawing));
  fillTable(calls);
  fillSummary(calls, drawing);
  fillGroups(drawing);
  fillMatches();
  highlight();
  fillDetails();
  document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
  performance.mark('callmap:filter-applied');
}

function fillSummary(calls, drawing) {
  const summary = `${numbers.format(calls.length)} calls, ${numbers.format(countWorkloads(calls))} workloads`;
  // Only a changed text is announced again.
  if ($('summary').textContent !== summary) $('summary').textContent = summary;
  const caption = view.aggregate
    ? `Calls on the map (drawn as ${numbers.format(drawing.nodes.size)} nodes, aggregated to namespaces)`
    : 'Calls on the map';
  if ($('calls-caption').textContent !== caption) $('calls-caption').textContent = caption;
}

function showNotice(text) {
  $('notice').textContent = text;
  $('notice').hidden = !text;
}

/** The namespace choices and the time slider follow the whole map. */
function refreshChoices() {
  const namespaces = new Set();
  for (const edge of map.edges.values()) {
    if (edge.client.namespace) namespaces.add(edge.client.namespace);
    if (edge.server.namespace) namespaces.add(edge.server.namespace);
  }
  if (view.namespace) namespaces.add(view.namespace);  // keep the choice while it has no calls
  const select = $('namespace');
  const wanted = ['', ...[...namespaces].sort()];
  const have = [...select.options].map((option) => option.value);
  if (wanted.join('\n') !== have.join('\n')) {
    select.replaceChildren(...wanted.map((name) => new Option(name || 'all', name)));
    select.value = view.namespace;
  }
  showTime();
}

// --- time ------------------------------------------------------------------------

function timeRange() {
  let earliest = Infinity;
  for (const edge of map.edges.values()) earliest = Math.min(earliest, edge.first_seen);
  const now = serverNow();
  return { min: Math.min(earliest, now), max: now };
}

/** Put the slider where view.time is, and say which time it is. */
function showTime() {
  const slider = $('time');
  const { min, max } = timeRange();
  const text = view.time === null ? 'now' : isoTime(view.time);
  slider.value = view.time === null || max <= min ? 1000 : Math.round(((view.time - min) / (max - min)) * 1000);
  slider.setAttribute('aria-valuetext', text);
  $('time-label').textContent = text;
}

function timeFromSlider() {
  const value = Number($('time').value);
  if (value >= 1000) return null;
  const { min, max } = timeRange();
  return min + ((max - min) * value) / 1000;
}

function isoTime(seconds) {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function ago(seconds) {
  const s = Math.max(0, serverNow() - seconds);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

// --- the table ---------------------------------------------------------------------

const SORT_KEYS = {
  client: ({ edge }) => nodeText(edge.client).toLowerCase(),
  server: ({ edge }) => nodeText(edge.server).toLowerCase(),
  ports: ({ edge }) => edge.ports[0] ?? -1,
  sources: ({ edge }) => edge.sources.join(','),
  first_seen: ({ edge }) => edge.first_seen,
  last_seen: ({ edge }) => edge.last_seen,
};

function sortCalls(calls) {
  const key = SORT_KEYS[view.sort.key], dir = view.sort.dir;
  const keyed = calls.map((call) => [key(call), call.edge.id, call]);
  keyed.sort((a, b) => dir * (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0) || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return keyed.map((entry) => entry[2]);
}

/** Where a node is: its namespace, after its cluster when the map has several. */
function whereOf(node) {
  return [map.clusters.length > 1 ? node.cluster : null, node.namespace].filter(Boolean).join('/');
}

/** A node's name in text, for sorting: its label, then where it is. */
function nodeText(node) {
  return `${node.label ?? node.id} ${whereOf(node)}`;
}

function fillTable(calls) {
  const pages = Math.max(1, Math.ceil(calls.length / PAGE_ROWS));
  view.page = Math.min(view.page, pages - 1);
  const from = view.page * PAGE_ROWS;
  const rows = sortCalls(calls).slice(from, from + PAGE_ROWS);
  const body = document.createElement('tbody');
  body.append(...rows.map(callRow));
  $('calls').tBodies[0].replaceWith(body);
  $('rows').textContent = calls.length
    ? `rows ${numbers.format(from + 1)}–${numbers.format(from + rows.length)} of ${numbers.format(calls.length)}`
    : 'no calls match';
  $('prev-page').disabled = view.page === 0;
  $('next-page').disabled = view.page >= pages - 1;
  for (const th of $('calls').tHead.rows[0].cells) {
    if (th.dataset.sort === view.sort.key) th.setAttribute('aria-sort', view.sort.dir > 0 ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
}

function callRow({ edge, change }) {
  const row = document.createElement('tr');
  row.tabIndex = 0;
  row.dataset.edgeId = edge.id;
  row.dataset.client = edge.client.id;
  row.dataset.server = edge.server.id;
  if (change) row.dataset.change = change;
  row.append(
    nodeCell(edge.client), nodeCell(edge.server),
    element('td', edge.ports.join(', ')), element('td', edge.sources.join(', ')),
    timeCell(edge.first_seen, change === 'new' ? 'new' : ''),
    timeCell(edge.last_seen, change === 'expired' ? 'expired' : ''),
  );
  return row;
}

function nodeCell(node) {
  const cell = document.createElement('td');
  cell.append(nodeButton(node));
  if (whereOf(node)) cell.append(' ', element('span', whereOf(node), 'muted'));
  return cell;
}

/** A button that opens a node's details. */
function nodeButton(node) {
  const button = element('button', shown(node.label || node.id), 'linkish');
  button.type = 'button';
  button.dataset.node = node.id;
  button.title = shown(node.id);
  return button;
}

function timeCell(seconds, badge) {
  const cell = document.createElement('td');
  const time = element('time', isoTime(seconds).replace('T', ' '));
  time.dateTime = isoTime(seconds);
  time.title = ago(seconds);
  cell.append(time);
  if (badge) cell.append(element('span', badge, `badge ${badge}`));
  return cell;
}

/** A name as shown: control and bidi characters made visible, so a hostile
 *  name can neither break a line nor turn the text after it around. */
function shown(text) {
  return String(text).replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function element(tag, text = '', className = '') {
  const made = document.createElement(tag);
  made.textContent = text;
  if (className) made.className = className;
  return made;
}

// --- lists: groups and search results ----------------------------------------------

/** Make `list` hold one item per entry of `items`, reusing the items it has, so
 *  a live change does not take the keyboard focus away. */
function syncList(list, items, keyOf, make, update) {
  const existing = new Map([...list.children].map((item) => [item.dataset.key, item]));
  let previous = null;
  for (const entry of items) {
    const key = keyOf(entry);
    let item = existing.get(key);
    if (item) existing.delete(key);
    else {
      item = make(entry);
      item.dataset.key = key;
    }
    update(item, entry);
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (item !== expected) list.insertBefore(item, expected);
    previous = item;
  }
  for (const item of existing.values()) item.remove();
}

function fillGroups(drawing) {
  const groups = [...drawing.boxes].map(([key, members]) => ({ key, size: members.size, collapsed: false }));
  for (const node of drawing.nodes.values()) {
    if (node.type === 'group') groups.push({ key: node.id, size: node.members.size, collapsed: true });
  }
  groups.sort((a, b) => a.key.localeCompare(b.key));
  $('groups-empty').hidden = groups.length > 0;
  syncList($('groups'), groups, (group) => group.key, (group) => {
    const item = document.createElement('li');
    const button = element('button', '');
    button.type = 'button';
    button.dataset.group = group.key;
    item.append(element('span', ''), button);
    return item;
  }, (item, group) => {
    const name = groupName(group.key);
    item.firstChild.textContent = `${name} (${group.size})`;
    const button = item.lastChild;
    button.textContent = group.collapsed ? 'Expand' : 'Collapse';
    button.setAttribute('aria-expanded', String(!group.collapsed));
    button.setAttribute('aria-label', `${group.collapsed ? 'Expand' : 'Collapse'} ${name}`);
  });
}

function toggleGroup(key) {
  if (view.collapsed.has(key)) view.collapsed.delete(key);
  else view.collapsed.add(key);
  render();
}

/** Real nodes on the calls shown whose name or id holds the search text, and
 *  the drawn nodes to highlight for them. */
function searchMatches() {
  const text = view.search.trim().toLowerCase();
  const real = new Map(), drawn = new Set();
  if (!text) return { real: [], drawn };
  const test = (node) => node.id.toLowerCase().includes(text) || String(node.label ?? '').toLowerCase().includes(text);
  for (const { edge } of last.calls) {
    for (const node of [edge.client, edge.server]) {
      if (!real.has(node.id) && test(node)) real.set(node.id, node);
    }
  }
  for (const node of last.drawing.nodes.values()) {
    if (node.id.toLowerCase().includes(text) || node.label.toLowerCase().includes(text)) drawn.add(node.id);
  }
  for (const id of real.keys()) drawn.add(drawnId(id));
  const sorted = [...real.values()].sort((a, b) => String(a.label).localeCompare(String(b.label)));
  return { real: sorted, drawn };
}

function fillMatches() {
  const { real } = searchMatches();
  const shown = real.slice(0, MATCH_LIMIT).map((node) => ({ key: node.id, node }));
  if (real.length > MATCH_LIMIT) shown.push({ key: '', more: real.length - MATCH_LIMIT });
  syncList($('matches'), shown, (entry) => entry.key, (entry) => {
    const item = document.createElement('li');
    if (entry.node) item.append(nodeButton(entry.node), element('span', entry.node.namespace || entry.node.type, 'muted'));
    else item.append(element('span', '', 'muted'));
    return item;
  }, (item, entry) => {
    if (!entry.node) item.firstChild.textContent = `and ${numbers.format(entry.more)} more: type more of the name`;
  });
}

/** After a new search: select the first match and bring it into view. */
function selectFirstMatch() {
  const { real, drawn } = searchMatches();
  const first = real[0]?.id ?? [...drawn][0];
  if (!first) return;
  showDetails(first);
  const node = cy.getElementById(drawnId(first));
  if (node.nonempty()) cy.center(node);
}

// --- details -------------------------------------------------------------------------

function showDetails(id) {
  view.selected = id;
  highlight();
  fillDetails();
}

/** The calls of a node (real, or drawn for many), from those shown. */
function callsOf(id) {
  const out = [], into = [];
  let node = null;
  for (const call of last.calls) {
    const { client, server } = call.edge;
    if (client.id === id || last.drawnOf.get(client.id) === id) out.push(call);
    if (server.id === id || last.drawnOf.get(server.id) === id) into.push(call);
    if (client.id === id) node = client;
    if (server.id === id) node = server;
  }
  return { node: node ?? findNode(id), out, into };
}

/** A real node of the whole map, shown or not (its calls may all be filtered out). */
function findNode(id) {
  for (const { client, server } of map.edges.values()) {
    if (client.id === id) return client;
    if (server.id === id) return server;
  }
  return null;
}

let detailsShown = { key: null, policyKey: null };

function fillDetails() {
  const id = view.selected;
  $('details-hint').hidden = id !== null;
  $('details-body').hidden = id === null;
  if (id === null) return;
  const { node, out, into } = callsOf(id);
  // Rebuild only what changed, so a live update neither flickers nor moves the focus.
  const key = JSON.stringify([id, [...out, ...into].map(({ edge, change }) => [edge.id, edge.last_seen, edge.event, change])]);
  if (key === detailsShown.key) return;
  detailsShown.key = key;
  const drawn = last.drawing.nodes.get(id);
  $('details-title').textContent = `Details: ${shown(node?.label ?? drawn?.label ?? id)}`;
  fillFacts(id, node, drawn, out, into);
  fillPeers($('calls-out'), $('calls-out-count'), out, 'server', node === null);
  fillPeers($('calls-in'), $('calls-in-count'), into, 'client', node === null);
  fillHealth([...out, ...into], id);
  const policyKey = JSON.stringify([id, [...out, ...into].map(({ edge }) => edge.id).sort()]);
  if (policyKey !== detailsShown.policyKey) {
    detailsShown.policyKey = policyKey;
    loadPolicy(node, out, into);
  }
}

function fillFacts(id, node, drawn, out, into) {
  const facts = [];
  if (node) {
    facts.push(['Name', shown(node.label)], ['Id', shown(node.id)], ['Type', node.type]);
    if (node.kind) facts.push(['Kind', node.kind]);
    if (node.namespace) facts.push(['Namespace', node.namespace]);
    if (node.cluster) facts.push(['Cluster', node.cluster]);
    const labels = Object.entries(node.labels || {}).map(([k, v]) => shown(`${k}=${v}`));
    if (labels.length) facts.push(['Labels', labels.join(', ')]);
  } else {
    facts.push(['Group', drawn ? drawn.label : id], ['Id', id]);
    if (drawn) facts.push(['Members', numbers.format(drawn.members.size)]);
  }
  const all = [...out, ...into].map((call) => call.edge);
  if (!all.length) {
    facts.push(['Calls', 'none shown with the current filters']);
  } else {
    const served = new Set(into.flatMap((call) => call.edge.ports));
    const called = new Set(out.flatMap((call) => call.edge.ports));
    if (served.size) facts.push(['Ports served', [...served].sort((a, b) => a - b).join(', ')]);
    if (called.size) facts.push(['Ports called', [...called].sort((a, b) => a - b).join(', ')]);
    facts.push(['Seen by', [...new Set(all.flatMap((edge) => edge.sources))].sort().join(', ')]);
    const first = Math.min(...all.map((edge) => edge.first_seen));
    const lastSeen = Math.max(...all.map((edge) => edge.last_seen));
    facts.push(['First seen', `${isoTime(first)} (${ago(first)})`], ['Last seen', `${isoTime(lastSeen)} (${ago(lastSeen)})`]);
  }
  $('details-facts').replaceChildren(...facts.flatMap(([term, value]) => [element('dt', term), element('dd', value)]));

  // A namespace or a collapsed group: offer the way down to its workloads.
  const drill = $('drill');
  const type = drawn?.type;
  $('details-drill').hidden = !(type === 'namespace' || type === 'group');
  if (type === 'namespace') drill.textContent = `Show the workloads of ${drawn.label}`;
  if (type === 'group') drill.textContent = `Expand ${drawn.label}`;
  drill.dataset.target = id;
  drill.dataset.type = type ?? '';
}

/** The calls a node makes (`side` "server": list their servers) or takes. */
function fillPeers(list, count, calls, side, many) {
  count.textContent = `(${numbers.format(calls.length)})`;
  const items = calls.slice(0, LIST_LIMIT).map(({ edge, change }) => {
    const item = document.createElement('li');
    const peer = edge[side];
    if (many) {
      // A group's call: say which of its members it is.
      const member = side === 'server' ? edge.client : edge.server;
      item.append(nodeButton(member), side === 'server' ? ' → ' : ' ← ');
    }
    item.append(nodeButton(peer));
    const facts = [edge.ports.length ? `port ${edge.ports.join(', ')}` : '', edge.kind, edge.sources.join('+')];
    item.append(' ', element('span', facts.filter(Boolean).join(' · '), 'muted'));
    if (change) item.append(element('span', change, `badge ${change}`));
    return item;
  });
  if (calls.length > LIST_LIMIT) {
    items.push(element('li', `and ${numbers.format(calls.length - LIST_LIMIT)} more: see the table`, 'muted'));
  }
  if (!calls.length) items.push(element('li', 'none', 'muted'));
  list.replaceChildren(...items);
}

/** L4 health is not in the edges yet: this shows an edge's `health` object
 *  when one comes, and stays hidden until then. */
function fillHealth(calls, id) {
  const items = [];
  for (const { edge } of calls) {
    if (!edge.health || typeof edge.health !== 'object') continue;
    const peer = edge.client.id === id || last.drawnOf.get(edge.client.id) === id ? edge.server : edge.client;
    const fields = Object.entries(edge.health).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`);
    items.push(element('li', shown(`${peer.label}: ${fields.join(', ')}`)));
  }
  $('health').hidden = items.length === 0;
  $('health-list').replaceChildren(...items);
}

let policyRequest = 0;
let policyKindChosen = false;
let policyText = '';  // the policy as the server sent it, for the Copy button

/** Fetch the policy callmap would export for a workload, into #policy. */
async function loadPolicy(node, out, into) {
  const pre = $('policy'), copy = $('copy-policy'), select = $('policy-kind');
  const request = ++policyRequest;
  copy.disabled = true;
  $('copy-status').textContent = '';
  if (!node || node.type !== 'workload') {
    select.disabled = true;
    pre.textContent = '# callmap exports policies for workloads; select one to see its policy.';
    return;
  }
  select.disabled = false;
  // A workload that only calls has intents and no ingress policy: show what exists.
  if (!policyKindChosen) select.value = into.length || !out.length ? 'networkpolicy' : 'intents';
  const kind = select.value;
  pre.textContent = 'loading…';
  let text;
  try {
    const response = await fetch(apiUrl('api/policy', { workload: node.id, kind }), { cache: 'no-store' });
    const body = await response.text();
    if (response.ok) {
      text = body;
      copy.disabled = false;
    } else if (response.status === 404) {
      text = `# callmap exports no ${POLICY_NAMES[kind]} for this workload.\n${comment(body)}`;
    } else if (response.status === 401) {
      text = '# unauthorized: the page has no valid token.';
    } else {
      text = `# the server answered ${response.status}.\n${comment(body)}`;
    }
  } catch (error) {
    text = `# the server could not be reached: ${error.message}`;
  }
  if (request !== policyRequest) return;  // a later request wins
  policyText = text;
  // Shown with control characters made visible, line by line; copied verbatim.
  pre.textContent = text.split('\n').map(shown).join('\n');
}

function comment(text) {
  return text.trim().split('\n').map((line) => `# ${line}`).join('\n');
}

async function copyPolicy() {
  const text = policyText;
  let done = false;
  try {
    await navigator.clipboard.writeText(text);
    done = true;
  } catch {
    // No clipboard API (plain http to a remote host): the old way.
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.append(area);
    area.select();
    done = document.execCommand('copy');
    area.remove();
  }
  $('copy-status').textContent = done ? 'copied' : 'could not copy: select the text instead';
}

// --- controls ------------------------------------------------------------------------

function debounce(action, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => action(...args), ms);
  };
}

function wireControls() {
  const later = debounce(render, 150);
  const on = (id, type, handler) => $(id).addEventListener(type, handler);
  on('group', 'change', (event) => {
    view.group = event.target.value;
    view.collapsed.clear();
    layoutNext = true;  // every node changes box: positions say nothing about the new boxes
    render();
  });
  on('aggregate', 'change', (event) => {
    view.aggregate = event.target.checked;
    view.collapsed.clear();
    layoutNext = true;  // most nodes come or go: lay the new set out as a whole
    render();
  });
  on('namespace', 'change', (event) => { view.namespace = event.target.value; view.page = 0; render(); });
  on('workload', 'input', (event) => { view.workload = event.target.value; view.page = 0; later(); });
  on('label', 'input', (event) => { view.label = event.target.value; view.page = 0; later(); });
  on('kinds', 'change', () => {
    view.kinds = new Set([...$('kinds').querySelectorAll('input:checked')].map((input) => input.value));
    render();
  });
  on('changes', 'change', (event) => { view.changes = event.target.value; render(); });
  on('include-expired', 'change', (event) => { view.includeExpired = event.target.checked; render(); });
  on('time', 'input', () => {
    view.time = timeFromSlider();
    $('time-label').textContent = view.time === null ? 'now' : isoTime(view.time);
    later();
  });
  on('search', 'input', debounce((event) => {
    view.search = event.target.value;
    render();
    selectFirstMatch();
  }, 150));
  on('fit', 'click', () => cy.fit(undefined, 30));
  on('relayout', 'click', () => layoutAll());
  // Paging and sorting change the table only: the drawing need not be touched.
  on('prev-page', 'click', () => { view.page -= 1; fillTable(last.calls); });
  on('next-page', 'click', () => { view.page += 1; fillTable(last.calls); });
  on('groups', 'click', (event) => {
    const key = event.target.closest('button')?.dataset.group;
    if (key) toggleGroup(key);
  });
  on('drill', 'click', (event) => drillInto(event.target.dataset.target, event.target.dataset.type));
  on('policy-kind', 'change', () => {
    policyKindChosen = true;
    const { node, out, into } = callsOf(view.selected);
    loadPolicy(node, out, into);
  });
  on('copy-policy', 'click', copyPolicy);
  $('calls').tHead.addEventListener('click', (event) => {
    const key = event.target.closest('th')?.dataset.sort;
    if (!key) return;
    view.sort = { key, dir: view.sort.key === key ? -view.sort.dir : 1 };
    fillTable(last.calls);
  });
  // Node buttons anywhere (table, lists, details) open that node's details.
  document.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-node]');
    if (button) return showDetails(button.dataset.node);
    const row = event.target.closest('#calls tbody tr');
    if (row) showDetails(row.dataset.client);
  });
  $('calls').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && event.target.matches('tbody tr')) showDetails(event.target.dataset.client);
  });
}

/** From a namespace node to its workloads; from a collapsed group to its members. */
function drillInto(id, type) {
  if (type === 'group') return toggleGroup(id);
  const namespace = last.drawing.nodes.get(id)?.namespace;
  if (!namespace) return;
  view.namespace = $('namespace').value = namespace;
  view.aggregate = $('aggregate').checked = false;
  view.selected = null;
  layoutNext = true;
  render();
}

// --- test hooks and start --------------------------------------------------------------

window.callmap = {
  visibleEdgeIds: () => cy.edges().map((edge) => edge.id()),
  visibleNodeIds: () => leaves().map((node) => node.id()),
  nodeCount: () => leaves().length,
  edgeCount: () => cy.edges().length,
  /** Where each drawn node is, {id: {x, y}} in model coordinates: to check that
   *  the drawing stays put when calls arrive. */
  nodePositions: () => Object.fromEntries(leaves().map((node) => [node.id(), { ...node.position() }])),
};

function start() {
  if (typeof cytoscape !== 'function') {
    setStatus('error', 'error');
    showNotice('The drawing library (static/vendor/cytoscape.min.js) did not load.');
    return;
  }
  createDrawing();
  wireControls();
  connect();
}

start();
