// The details panel: the facts, the calls and the L4 health of the selected
// node, and the policy callmap would export for it (from api/policy).

import { $, map, view, last, apiUrl } from './state.js';
import { numbers, shown, element, nodeButton, isoTime, ago, portLabels, byPort } from './dom.js';
import { highlight } from './drawing.js';

const LIST_LIMIT = 200;        // peers listed in the details before "and N more"
const POLICY_NAMES = { networkpolicy: 'NetworkPolicy', cilium: 'CiliumNetworkPolicy', intents: 'ClientIntents' };

export function showDetails(id) {
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

export function fillDetails() {
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
    const served = new Set(into.flatMap((call) => portLabels(call.edge)));
    const called = new Set(out.flatMap((call) => portLabels(call.edge)));
    if (served.size) facts.push(['Ports served', [...served].sort(byPort).join(', ')]);
    if (called.size) facts.push(['Ports called', [...called].sort(byPort).join(', ')]);
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
    const ports = portLabels(edge);
    const facts = [ports.length ? `port ${ports.join(', ')}` : '', edge.kind, edge.sources.join('+')];
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

/** How the selected node's calls went lately (an edge's `health_text`, from the
 *  nodes' connection tracking and the client sockets' round-trip times and
 *  retransmits), failing and slow ones marked; hidden when no call has health. */
function fillHealth(calls, id) {
  const items = [];
  for (const { edge } of calls) {
    if (typeof edge.health_text !== 'string') continue;
    const peer = edge.client.id === id || last.drawnOf.get(edge.client.id) === id ? edge.server : edge.client;
    const item = element('li', shown(`${peer.label}: ${edge.health_text}`));
    if (edge.slow) item.prepend(element('span', 'slow', 'badge slow'), ' ');
    if (edge.failing) item.prepend(element('span', 'failing', 'badge failing'), ' ');
    items.push(item);
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

/** Another kind of policy chosen: from now on the reader's choice stands. */
export function choosePolicyKind() {
  policyKindChosen = true;
  const { node, out, into } = callsOf(view.selected);
  loadPolicy(node, out, into);
}

function comment(text) {
  return text.trim().split('\n').map((line) => `# ${line}`).join('\n');
}

export async function copyPolicy() {
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
