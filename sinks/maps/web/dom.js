// Text and elements for the page, and times as text. Names come from the
// network and may be hostile (a DNS name can hold "<script>"): text reaches the
// page through textContent and DOM APIs only, never innerHTML.

import { serverNow } from './state.js';

export const numbers = new Intl.NumberFormat('en');

/** An edge's ports as text: its TCP ports as numbers, then its UDP ports as
 *  `53/udp` (pages of an older server send no `udp_ports`). */
export function portLabels(edge) {
  return [...edge.ports.map(String), ...(edge.udp_ports ?? []).map((port) => `${port}/udp`)];
}

/** Orders port labels: TCP before UDP, each in numeric order. */
export function byPort(a, b) {
  const udp = (label) => (label.endsWith('/udp') ? 1 : 0);
  return udp(a) - udp(b) || parseInt(a, 10) - parseInt(b, 10);
}

/** A name as shown: control and bidi characters made visible, so a hostile
 *  name can neither break a line nor turn the text after it around. */
export function shown(text) {
  return String(text).replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function element(tag, text = '', className = '') {
  const made = document.createElement(tag);
  made.textContent = text;
  if (className) made.className = className;
  return made;
}

/** A button that opens a node's details. */
export function nodeButton(node) {
  const button = element('button', shown(node.label || node.id), 'linkish');
  button.type = 'button';
  button.dataset.node = node.id;
  button.title = shown(node.id);
  return button;
}

/** Make `list` hold one item per entry of `items`, reusing the items it has, so
 *  a live change does not take the keyboard focus away. */
export function syncList(list, items, keyOf, make, update) {
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

export function isoTime(seconds) {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function ago(seconds) {
  const s = Math.max(0, serverNow() - seconds);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}
