/**
 * rustybeam.js — keep a page live against a rustybeam server. No dependencies, no build.
 *
 *     import { watch, put, post, del, get } from "/_rustybeam/rustybeam.js";
 *
 *     const live = watch();                     // this page's document, whole
 *     const part = watch({ selectors: ["#todo"] });
 *     live.addEventListener("change", (e) => { e.detail; e.preventDefault(); });
 *     live.close();
 *
 *     await post("#todo", "<li id=item-1>milk</li>");   // -> the appended HTML as stored
 *     await put("#item-1", "<li id=item-1>oat milk</li>");
 *     await del("#item-1");
 *
 * `watch(options)` opens `ws(s)://<host><url>` and subscribes, as JSON text frames,
 * `{"action":"subscribe","url","selector","since"}` once per selector (a whole-document
 * watch sends no selector). Every StreamItem for this document is applied to the live
 * DOM with the server's semantics: PUT replaces each match, POST appends to each match,
 * DELETE removes each match; an empty selector is a whole-document change.
 *
 * Options: `url` (default `location.pathname`), `selectors` (default: whole document),
 * `root` (where selectors are matched, default `document`), `since` (the sequence number
 * of the page as served, when the page knows it; otherwise the watched parts are fetched
 * afresh and their `X-Rustybeam-Sequence` header is used, or for a whole-document watch
 * a HEAD request's), `apply` (default: true when `url` is this page's
 * document), `reconnect` (default true), `minDelay`/`maxDelay` (backoff, ms).
 *
 * Events (all `CustomEvent`s, `detail` described):
 * - `change`  — cancelable, before a StreamItem is applied: `{method, url, selector,
 *               sequence, content, nodes, targets}`. `preventDefault()` skips applying.
 * - `applied` — after applying: same detail, `nodes` being the nodes now in the page.
 * - `open`    — every subscription is confirmed: `{url, sequence}`.
 * - `close`   — the socket closed: `{code, reason, reconnectIn}` (`null` when not retrying).
 * - `reset`   — the server's history did not reach back, the watched parts were reloaded
 *               over HTTP: `{url, sequence}`.
 * - `error`   — a server error message, a socket error (`error: "socket"`), a failed
 *               reload or a change that could not be applied: `{error, message}`.
 *
 * Resuming: the client subscribes with `since` (the last sequence it has seen), so after
 * a reconnect the server replays what was missed or answers `{"type":"reset"}`. Without a
 * known sequence (no header, or unnumbered items), or after the server closed with 1001
 * (going away: a restarted server numbers its changes afresh), a reconnect reloads the
 * watched parts.
 * Reconnects back off exponentially (with jitter) from `minDelay` to `maxDelay`.
 * @module rustybeam
 */

const STREAM_ITEM = "http://rustybeam.net/StreamItem";
const SEQUENCE_HEADER = "X-Rustybeam-Sequence";
const SEEN_LIMIT = 1024;

/**
 * @typedef {object} StreamItem
 * @property {string} method      PUT, POST or DELETE.
 * @property {string} url         The document's canonical URL.
 * @property {string} selector    The request's selector; "" for a whole-document change.
 * @property {number|null} sequence  Present when the subscription named `since`.
 * @property {string} content     The changed nodes' HTML as stored (framing whitespace trimmed).
 */

/**
 * Parse one StreamItem frame. The fields are read with the browser's parser; the content
 * is kept as raw HTML because table rows, list items or options only parse correctly in
 * the context of where they are going (see {@link parseFragment}).
 * @param {string} text
 * @returns {StreamItem|null} null when the frame is not a StreamItem.
 */
export function parseStreamItem(text) {
  const doc = new DOMParser().parseFromString(text, "text/html");
  const item = doc.querySelector(`[itemscope][itemtype="${STREAM_ITEM}"]`);
  if (!item) return null;
  const prop = (name) => item.querySelector(`:scope > [itemprop="${name}"]`);
  const field = (name) => prop(name)?.textContent.trim() ?? "";
  const seq = prop("sequence");
  return {
    method: field("method").toUpperCase(),
    url: field("url"),
    selector: field("selector"),
    sequence: seq ? Number.parseInt(seq.textContent.trim(), 10) : null,
    content: rawContent(text) ?? trimFraming(prop("content")?.innerHTML ?? ""),
  };
}

/**
 * The content exactly as the server wrote it: everything between the content div's
 * start tag and the two closing tags that end the frame. The fields before it are
 * HTML-escaped, so the first such start tag is the content's.
 */
function rawContent(text) {
  const open = text.search(/<div\s+itemprop\s*=\s*["']?content["']?\s*>/i);
  if (open < 0) return null;
  const start = text.indexOf(">", open) + 1;
  const outer = text.lastIndexOf("</div>");
  const inner = outer > 0 ? text.lastIndexOf("</div>", outer - 1) : -1;
  if (inner < start) return null;
  return trimFraming(text.slice(start, inner));
}

/** Drop the frame's own line break and indentation around the content, nothing more. */
function trimFraming(html) {
  return html.replace(/^\r?\n[ \t]*/, "").replace(/\r?\n[ \t]*$/, "");
}

/**
 * Parse an HTML fragment without running its scripts. A `<template>` accepts `<tr>`,
 * `<td>`, `<li>`, `<option>`... at top level, so they survive as they do on the server.
 * @param {string} html
 * @returns {Node[]}
 */
export function parseFragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return [...template.content.childNodes];
}

/**
 * The canonical name of a document path: `/` and `/dir/` end in `index.html`;
 * percent-escapes are decoded so that both sides compare equal.
 * @param {string} path
 */
export function canonicalPath(path) {
  let p = path.split(/[?#]/, 1)[0] || "/";
  try { p = decodeURIComponent(p); } catch { /* keep it as sent */ }
  if (!p.startsWith("/")) p = "/" + p;
  return p.endsWith("/") ? p + "index.html" : p;
}

/** Every canonical name `path` may stand for: `/dir` may be a directory's index. */
function documentNames(path) {
  const p = canonicalPath(path);
  const last = p.slice(p.lastIndexOf("/") + 1);
  return last.includes(".") ? [p] : [p, p + "/index.html"];
}

function rangeValue(selector) {
  if (typeof selector !== "string" || !selector.trim()) {
    throw new TypeError("a non-empty CSS selector is required");
  }
  return "selector=" + (/[^\x20-\x7e]|%/.test(selector) ? encodeURIComponent(selector) : selector);
}

async function request(method, selector, { url = location.pathname, body, ifMatch, signal } = {}) {
  const headers = { Range: rangeValue(selector) };
  if (body !== undefined) headers["Content-Type"] = "text/html; charset=utf-8";
  if (ifMatch) headers["If-Match"] = ifMatch;
  const response = await fetch(url, { method, headers, body, signal, cache: "no-store" });
  const text = await response.text();
  if (!response.ok) {
    const error = new Error(text.trim() || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.response = response;
    throw error;
  }
  return text;
}

/**
 * Fetch the outer HTML of every element `selector` matches (joined by "\n").
 * @param {string} selector
 * @param {{url?: string, signal?: AbortSignal}} [options]
 * @returns {Promise<string>}
 * @throws {Error} with the server's text/plain reason and a `status` property.
 */
export const get = (selector, options) => request("GET", selector, options);

/**
 * Replace every element `selector` matches with `html`.
 * @param {string} selector
 * @param {string} html
 * @param {{url?: string, ifMatch?: string, signal?: AbortSignal}} [options]
 * @returns {Promise<string>} the new element(s) as stored.
 */
export const put = (selector, html, options) => request("PUT", selector, { ...options, body: html });

/**
 * Append `html` as the last children of every element `selector` matches.
 * @returns {Promise<string>} the appended nodes as stored.
 */
export const post = (selector, html, options) => request("POST", selector, { ...options, body: html });

/**
 * Remove every element `selector` matches.
 * @param {string} selector
 * @param {{url?: string, ifMatch?: string, signal?: AbortSignal}} [options]
 * @returns {Promise<void>}
 */
export const del = (selector, options) => request("DELETE", selector, options).then(() => {});

/**
 * Watch a document and keep the page in step with it.
 * @param {object} [options] see the module header.
 * @returns {LiveDocument}
 */
export function watch(options = {}) {
  return new LiveDocument(options);
}

/** A watched document: an EventTarget that owns one (re)connecting WebSocket. */
export class LiveDocument extends EventTarget {
  constructor({
    url = location.pathname,
    selectors = null,
    root = document,
    since = null,
    apply,
    reconnect = true,
    minDelay = 250,
    maxDelay = 10_000,
  } = {}) {
    super();
    const target = new URL(url, location.href);
    /** The path as given; the server names it canonically in its answers. */
    this.url = target.pathname;
    this.selectors = selectors?.length ? [...selectors] : [null];
    this.root = root;
    /** The last sequence number applied, or null while unknown. */
    this.sequence = since;
    this.apply = apply ?? documentNames(location.pathname).includes(canonicalPath(this.url));
    this.connected = false;
    this.closed = false;
    this._names = new Set(documentNames(this.url));
    this._wsUrl = `${target.protocol === "https:" ? "wss:" : "ws:"}//${target.host}${target.pathname}`;
    this._reconnect = reconnect;
    this._delays = { min: minDelay, max: maxDelay, next: minDelay };
    this._seen = new Set();
    this._buffer = null;
    this._floor = -Infinity;
    this._connections = 0;
    this._restarted = false;
    this._socket = null;
    this._timer = null;
    this._onOnline = () => this._timer && this._retryNow();
    addEventListener("online", this._onOnline);
    this._start();
  }

  /** Stop watching for good. */
  close() {
    this.closed = true;
    clearTimeout(this._timer);
    this._timer = null;
    removeEventListener("online", this._onOnline);
    this._socket?.close(1000);
  }

  async _start() {
    if (this.sequence === null) this.sequence = await this._startingSequence();
    if (!this.closed) this._connect();
  }

  /**
   * The sequence to subscribe from when the page did not say. Watched parts are
   * fetched afresh (their responses carry the number they are at), so that a change
   * made between the page's own load and this moment is not missed; a whole-document
   * watch asks with a HEAD instead, rather than rebuild the page it is running in.
   */
  async _startingSequence() {
    if (!this.apply || this.selectors.some((selector) => !selector)) return this._fetchSequence();
    try {
      return await this._reload();
    } catch {
      return this._fetchSequence();
    }
  }

  /** The document's current sequence number as the server reports it, or null. */
  async _fetchSequence() {
    try {
      const response = await fetch(this.url, { method: "HEAD", cache: "no-store" });
      return sequenceOf(response);
    } catch {
      return null;
    }
  }

  _connect() {
    const socket = new WebSocket(this._wsUrl);
    this._socket = socket;
    this._answers = 0;
    this._subscribed = false;
    this._floor = this.sequence ?? -Infinity;
    this._seen.clear();
    socket.onopen = () => {
      const since = this.sequence;
      this._resuming = since !== null;
      for (const selector of this.selectors) {
        const message = { action: "subscribe", url: this.url };
        if (selector) message.selector = selector;
        if (since !== null) message.since = since;
        socket.send(JSON.stringify(message));
      }
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this._receive(event.data);
    };
    socket.onerror = () => this._emit("error", { error: "socket", message: "WebSocket error" });
    socket.onclose = (event) => {
      if (this._socket !== socket) return;
      this._socket = null;
      this.connected = false;
      // 1001: the server is going away (restarting). A new process numbers its changes
      // afresh, so the numbers we hold mean nothing to it: reload on the next connection.
      if (event.code === 1001) this._restarted = true;
      const retry = this._reconnect && !this.closed;
      const delay = retry ? this._nextDelay() : null;
      if (retry) this._timer = setTimeout(() => this._retryNow(), delay);
      this._emit("close", { code: event.code, reason: event.reason, reconnectIn: delay });
    };
  }

  _retryNow() {
    clearTimeout(this._timer);
    this._timer = null;
    if (!this.closed && !this._socket) this._connect();
  }

  /** Exponential backoff with jitter, so a restarted server is not hit by every page at once. */
  _nextDelay() {
    const d = this._delays;
    const delay = d.next * (0.5 + Math.random() / 2);
    d.next = Math.min(d.next * 2, d.max);
    return Math.round(delay);
  }

  _receive(text) {
    if (text.trimStart().startsWith("{")) {
      let message;
      try { message = JSON.parse(text); } catch { return; }
      this._control(message);
    } else {
      const item = parseStreamItem(text);
      if (item) this._item(item);
    }
  }

  _control(message) {
    switch (message.type) {
      case "subscribed":
        if (message.url) documentNames(message.url).forEach((n) => this._names.add(n));
        if (++this._answers === 1) this._check(message.sequence);
        this._answered(message.url);
        return;
      case "reset":
        if (this._names.has(canonicalPath(message.url ?? this.url))) this._reset(message.sequence ?? null);
        return;
      case "error":
        this._emit("error", { error: message.error, message: message.message });
        // While subscribing, an error is the answer to one of our subscribes.
        if (!this._subscribed && this._answers < this.selectors.length) {
          this._answers++;
          this._answered();
        }
        return;
      default:
    }
  }

  _answered(url) {
    if (this._answers !== this.selectors.length) return;
    this._subscribed = true;
    this.connected = true;
    this._delays.next = this._delays.min;
    this._emit("open", { url: url ?? this.url, sequence: this.sequence });
  }

  /**
   * On the first answer of a connection: without a known sequence, changes may have been
   * missed while disconnected (reload); a sequence that went backwards means the server
   * restarted and lost its history (reload too), and so does a close with 1001 (going
   * away): a restarted server's numbers may have caught up with ours, and replaying "after
   * ours" would then skip changes silently.
   */
  _check(current) {
    current = Number.isInteger(current) ? current : null;
    const restarted = this._restarted;
    this._restarted = false;
    if (this._connections++ === 0 && this.sequence === null) return;
    if (restarted || this.sequence === null || (current !== null && current < this.sequence)) {
      this._reset(current);
    }
  }

  _item(item) {
    if (!this._names.has(canonicalPath(item.url))) return;
    if (item.sequence === null) {
      // Unnumbered items before the subscribe is answered come from the implicit
      // whole-document watch; when we asked for `since`, the replay brings them again.
      if (!this._subscribed && this._resuming) return;
      // Without numbers we cannot resume: the next reconnect reloads instead.
      this.sequence = null;
    } else {
      if (item.sequence <= this._floor || this._seen.has(item.sequence)) return;
      this._remember(item.sequence);
    }
    if (this._buffer) {
      this._buffer.push(item);
      return;
    }
    this._dispatch(item);
  }

  /**
   * Several subscriptions each replay from the same `since`, so numbers may arrive out of
   * order: remember which were seen rather than only the highest.
   */
  _remember(sequence) {
    this._seen.add(sequence);
    if (this._seen.size > SEEN_LIMIT) {
      const oldest = Math.min(...this._seen);
      this._seen.delete(oldest);
      this._floor = Math.max(this._floor, oldest);
    }
    if (this.sequence === null || sequence > this.sequence) this.sequence = sequence;
  }

  _dispatch(item) {
    const change = { ...item, nodes: parseFragment(item.content), targets: [] };
    if (this.apply && item.selector) change.targets = this._targets(item);
    const event = new CustomEvent("change", { detail: change, cancelable: true });
    this.dispatchEvent(event);
    if (event.defaultPrevented || !this.apply) return;
    if (!item.selector && item.method === "POST") {
      // An append to the file: what it changes in the parsed page is only known by reading it.
      this._reset(item.sequence);
      return;
    }
    try {
      change.nodes = applyItem(item, change.targets, this.root);
    } catch (error) {
      this._emit("error", { error: "apply", message: String(error?.message ?? error) });
      return;
    }
    this._emit("applied", change);
  }

  _targets(item) {
    try {
      return [...this.root.querySelectorAll(item.selector)];
    } catch {
      return [];
    }
  }

  /**
   * Reload every watched part over HTTP, then go on from the fetched version. Items that
   * arrive meanwhile are held back and only those newer than the fetched page applied.
   */
  async _reset(sequence) {
    if (this._buffer) return;
    this._buffer = [];
    let fetched = null;
    try {
      if (this.apply) fetched = await this._reload();
    } catch (error) {
      this._emit("error", { error: "reload", message: String(error?.message ?? error) });
    }
    const base = Math.max(fetched ?? -Infinity, sequence ?? -Infinity);
    const held = this._buffer;
    this._buffer = null;
    if (Number.isFinite(base)) {
      this.sequence = base;
      this._floor = base;
      this._seen.clear();
    }
    this._emit("reset", { url: this.url, sequence: this.sequence });
    for (const item of held) {
      if (item.sequence === null || !Number.isFinite(base) || item.sequence > base) this._dispatch(item);
    }
  }

  /** @returns {Promise<number|null>} the lowest sequence header among the responses. */
  async _reload() {
    const sequences = [];
    for (const selector of this.selectors) {
      const headers = selector ? { Range: rangeValue(selector) } : {};
      const response = await fetch(this.url, { headers, cache: "no-store" });
      sequences.push(sequenceOf(response));
      const text = await response.text();
      if (!selector) {
        if (!response.ok) throw new Error(text.trim() || `${response.status} ${response.statusText}`);
        replaceDocument(text, this.root);
      } else if (response.status === 416) {
        this.root.querySelectorAll(selector).forEach((e) => e.remove());
      } else if (!response.ok) {
        throw new Error(text.trim() || `${response.status} ${response.statusText}`);
      } else {
        replaceMatches(selector, text, this.root);
      }
    }
    return sequences.includes(null) ? null : Math.min(...sequences);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function sequenceOf(response) {
  const value = response.headers.get(SEQUENCE_HEADER);
  const n = value === null ? NaN : Number.parseInt(value, 10);
  return Number.isInteger(n) ? n : null;
}

/**
 * Apply one StreamItem to the DOM under `root`. `targets` are the current matches of the
 * item's selector. Returns the nodes inserted (PUT, POST) or removed (DELETE).
 * @param {StreamItem} item
 * @param {Element[]} targets
 * @param {Document|Element} [root]
 * @returns {Node[]}
 */
export function applyItem(item, targets, root = document) {
  if (!item.selector) {
    if (item.method === "PUT") return replaceDocument(item.content, root);
    return [];
  }
  if (item.method === "DELETE") {
    const outer = outermost(targets);
    outer.forEach((e) => e.remove());
    return outer;
  }
  // PUT replaces only the outermost matches (as the server does); POST appends to all.
  const matches = item.method === "PUT" ? outermost(targets) : targets;
  const groups = distribute(item.content, matches.length);
  const inserted = [];
  matches.forEach((target, i) => {
    if (item.method === "PUT" && isDocumentLevel(target)) {
      inserted.push(...replaceDocumentElement(target, groups.html(i)));
      return;
    }
    const nodes = groups.nodes(i);
    inserted.push(...nodes);
    if (item.method === "PUT") target.replaceWith(...nodes);
    else target.append(...nodes);
  });
  return inserted;
}

/**
 * The server sends one copy of the new nodes per target, joined by "\n". Split that back
 * into one piece per target; when it does not split evenly, fall back to sharing out the
 * top-level elements, or to giving every target all of the content.
 */
function distribute(content, count) {
  let piece = content;
  if (count > 1) {
    const length = (content.length - (count - 1)) / count;
    const candidate = Number.isInteger(length) ? content.slice(0, length) : null;
    piece = candidate !== null && Array(count).fill(candidate).join("\n") === content ? candidate : null;
  }
  if (piece !== null) return { html: () => piece, nodes: () => parseFragment(piece) };

  const all = parseFragment(content);
  const elements = all.filter((n) => n.nodeType === Node.ELEMENT_NODE);
  if (elements.length && elements.length % count === 0) {
    const k = elements.length / count;
    const share = (i) => elements.slice(i * k, (i + 1) * k);
    return {
      html: (i) => share(i).map((e) => e.outerHTML).join(""),
      nodes: (i) => share(i).map((e) => e.cloneNode(true)),
    };
  }
  return { html: () => content, nodes: () => all.map((n) => n.cloneNode(true)) };
}

function outermost(elements) {
  const set = new Set(elements);
  return elements.filter((e) => {
    for (let p = e.parentElement; p; p = p.parentElement) if (set.has(p)) return false;
    return true;
  });
}

function isDocumentLevel(element) {
  const doc = element.ownerDocument;
  return element === doc.documentElement || element === doc.head || element === doc.body;
}

/** PUT on `html`, `head` or `body`: the content is a document, or a document's part. */
function replaceDocumentElement(target, html) {
  if (target.localName === "html") return replaceDocument(html, target.ownerDocument);
  const parsed = new DOMParser().parseFromString(html, "text/html");
  return swapElement(target, parsed[target.localName]);
}

/**
 * Replace the page's body (children and attributes) and title with those of the HTML
 * document `html`. Scripts of the new document are not run, and the page's own module
 * state stays: handlers delegated on `document` keep working.
 * @returns {Node[]} the new body's children.
 */
export function replaceDocument(html, root = document) {
  const doc = root.ownerDocument ?? root;
  const parsed = new DOMParser().parseFromString(html, "text/html");
  if (parsed.title !== doc.title) doc.title = parsed.title;
  return swapElement(doc.body, parsed.body);
}

function swapElement(target, source) {
  for (const name of target.getAttributeNames()) {
    if (!source.hasAttribute(name)) target.removeAttribute(name);
  }
  for (const { name, value } of source.attributes) target.setAttribute(name, value);
  const nodes = [...source.childNodes].map((n) => target.ownerDocument.adoptNode(n));
  target.replaceChildren(...nodes);
  return nodes;
}

/**
 * Replace the page's matches of `selector` with the elements of a `Range` GET response:
 * pairwise when the counts agree, otherwise all of them in place of the first match.
 */
function replaceMatches(selector, html, root) {
  const local = outermost([...root.querySelectorAll(selector)]);
  const fresh = parseFragment(html).filter((n) => n.nodeType === Node.ELEMENT_NODE);
  if (local.length === fresh.length) {
    local.forEach((e, i) => e.replaceWith(fresh[i]));
  } else if (local.length) {
    local[0].replaceWith(...fresh);
    local.slice(1).forEach((e) => e.remove());
  } else {
    throw new Error(`nothing on the page matches ${selector}; reload the page`);
  }
}
