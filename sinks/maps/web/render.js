// One pass, render(): from the edges to everything shown (the drawing, the
// table, the summary, the namespace choices, the time slider, the lists of
// groups and of search results, the details).

import { $, map, view, last, serverNow } from './state.js';
import { numbers, element, nodeButton, syncList, isoTime } from './dom.js';
import { visibleCalls, countWorkloads, groupName, buildDrawing, searchMatches, drawnId } from './filters.js';
import { cy, elementsOf, highlight } from './drawing.js';
import { updateDrawing } from './layout.js';
import { fillTable } from './table.js';
import { showDetails, fillDetails } from './details.js';

const MATCH_LIMIT = 50;        // search results listed before "and N more"
const RENDER_DELAY_MS = 80;    // changes arriving together are drawn together

let renderTimer = null;

export function scheduleRender() {
  if (renderTimer === null) renderTimer = setTimeout(render, RENDER_DELAY_MS);
}

export function render() {
  clearTimeout(renderTimer);
  renderTimer = null;
  refreshChoices();
  const calls = visibleCalls();
  const drawing = buildDrawing(calls);
  Object.assign(last, { calls, drawing, drawnOf: drawing.drawnOf });
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
export function showTime() {
  const slider = $('time');
  const { min, max } = timeRange();
  const text = view.time === null ? 'now' : isoTime(view.time);
  slider.value = view.time === null || max <= min ? 1000 : Math.round(((view.time - min) / (max - min)) * 1000);
  slider.setAttribute('aria-valuetext', text);
  $('time-label').textContent = text;
}

export function timeFromSlider() {
  const value = Number($('time').value);
  if (value >= 1000) return null;
  const { min, max } = timeRange();
  return min + ((max - min) * value) / 1000;
}

// --- lists: groups and search results ----------------------------------------------

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

export function toggleGroup(key) {
  if (view.collapsed.has(key)) view.collapsed.delete(key);
  else view.collapsed.add(key);
  render();
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
export function selectFirstMatch() {
  const { real, drawn } = searchMatches();
  const first = real[0]?.id ?? [...drawn][0];
  if (!first) return;
  showDetails(first);
  const node = cy.getElementById(drawnId(first));
  if (node.nonempty()) cy.center(node);
}
