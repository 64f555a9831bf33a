// The drawing (Cytoscape.js): its style, its elements (from buildDrawing's
// nodes, edges and boxes), and the highlights: the selected node, its calls and
// the search matches. Where the nodes go is layout.js.

import { $, view } from './state.js';
import { shown, byPort } from './dom.js';
import { groupName, searchMatches, drawnId } from './filters.js';

const EDGE_LABELS = 600;       // edges drawn with a label (ports, calls) up to this many

/** The drawing as Cytoscape elements, by id: boxes first, then nodes, then edges. */
export function elementsOf(drawing) {
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
    const ports = [...edge.ports].sort(byPort);
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

export let cy = null;

export function createDrawing() {
  cy = cytoscape({
    container: $('map'), style: STYLE, elements: [],
    minZoom: 0.02, maxZoom: 4, boxSelectionEnabled: false, selectionType: 'single',
  });
}

export function leaves() {
  return cy.nodes().filter((node) => !node.data('box'));
}

/** Show the selected node and the calls it is on; match the search. */
export function highlight() {
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
