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
//
// The page's modules (ES modules, no build step; the page loads this one):
//
//   state.js    the map, the view, the outcome of the last render
//   stream.js   the event stream from api/events; the status line
//   filters.js  edges -> calls -> drawing, and the search (pure)
//   render.js   the one pass; the summary, time slider, groups, search results
//   drawing.js  Cytoscape: style, elements, highlights
//   layout.js   where nodes go: update by difference, stable placement, layouts
//   table.js    the table of calls and its pages
//   details.js  the details panel and the policy
//   dom.js      text and elements made safely; times as text
//   app.js      this one: the controls, the test hooks (window.callmap), start

import { $, view, last } from './state.js';
import { isoTime } from './dom.js';
import { connect, setStatus, showNotice } from './stream.js';
import { cy, createDrawing, leaves } from './drawing.js';
import { layoutAll, layoutOnNextRender } from './layout.js';
import { fillTable } from './table.js';
import { showDetails, choosePolicyKind, copyPolicy } from './details.js';
import { render, toggleGroup, timeFromSlider, selectFirstMatch } from './render.js';

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
  // On the drawing, a tap opens a node's details; a double tap on a box or a
  // collapsed group expands or collapses it.
  cy.on('tap', 'node', (event) => {
    if (!event.target.data('box')) showDetails(event.target.id());
  });
  cy.on('dbltap', 'node', (event) => {
    const node = event.target;
    if (node.data('box')) toggleGroup(node.data('key'));
    else if (node.data('type') === 'group') toggleGroup(node.id());
  });
  on('group', 'change', (event) => {
    view.group = event.target.value;
    view.collapsed.clear();
    layoutOnNextRender();  // every node changes box: positions say nothing about the new boxes
    render();
  });
  on('aggregate', 'change', (event) => {
    view.aggregate = event.target.checked;
    view.collapsed.clear();
    layoutOnNextRender();  // most nodes come or go: lay the new set out as a whole
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
  on('policy-kind', 'change', choosePolicyKind);
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
  layoutOnNextRender();
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
