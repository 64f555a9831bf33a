// The table of calls, sorted, one page of rows at a time.

import { $, map, view } from './state.js';
import { numbers, element, nodeButton, isoTime, ago, portLabels } from './dom.js';

const PAGE_ROWS = 500;         // rows of the table per page

const SORT_KEYS = {
  client: ({ edge }) => nodeText(edge.client).toLowerCase(),
  server: ({ edge }) => nodeText(edge.server).toLowerCase(),
  ports: ({ edge }) => edge.ports[0] ?? edge.udp_ports?.[0] ?? -1,
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

export function fillTable(calls) {
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
    element('td', portLabels(edge).join(', ')), element('td', edge.sources.join(', ')),
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

function timeCell(seconds, badge) {
  const cell = document.createElement('td');
  const time = element('time', isoTime(seconds).replace('T', ' '));
  time.dateTime = isoTime(seconds);
  time.title = ago(seconds);
  cell.append(time);
  if (badge) cell.append(element('span', badge, `badge ${badge}`));
  return cell;
}
