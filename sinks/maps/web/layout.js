// Where the nodes go. The drawing is updated by difference, never rebuilt:
// nodes keep their positions, and a new node is placed next to a neighbour, so
// one new call does not move the rest of the map. Everything is laid out again
// only on request, or when the nodes changed too much to keep their places.

import { cy, leaves } from './drawing.js';

const COSE_NODES = 400;        // force layout up to this many nodes; grid blocks beyond

const positions = new Map();  // node id -> {x, y}: where a node was, to put it back there
const rings = new Map();      // anchor node id -> nodes placed around it so far
let layoutNext = false;       // the next render lays out everything again (grouping changed)
let edgeCurve = 'bezier';

/** Have the next render lay out everything again. */
export function layoutOnNextRender() {
  layoutNext = true;
}

/** Make the drawing show `elements`, keeping every node that stays where it is. */
export function updateDrawing(elements) {
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
export function layoutAll() {
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
