// From the edges to what is shown, without touching the page or the drawing:
//
//   edges --filters--> calls (the table) --aggregation, groups--> drawing
//
// and which nodes match the search.

import { KINDS, map, view, last, serverNow } from './state.js';
import { portLabels } from './dom.js';

const CHANGE_WINDOWS = { none: 0, hour: 3600, day: 86400 };

/** The calls to show: [{edge, change}], change being "new", "expired" or "". */
export function visibleCalls() {
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

export function countWorkloads(calls) {
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

export function groupName(key) {
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
export function buildDrawing(calls) {
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
    for (const port of portLabels(edge)) drawn.ports.add(port);
    drawn.changes.add(change);
  }
  return { nodes, edges, boxes, drawnOf };
}

/** Real nodes on the calls shown whose name or id holds the search text, and
 *  the drawn nodes to highlight for them. */
export function searchMatches() {
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

export function drawnId(id) {
  if (id === null) return null;
  return last.drawnOf.get(id) ?? id;
}
