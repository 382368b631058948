// bridge.js — the Pushbridge browser client. An ES module with no build step:
//
//   import { Bridge } from "/bridge.js";
//   const bridge = new Bridge("", { user: "1" });           // "" = this page's server
//   bridge.on("message", (m) => console.log(m.id, m.routingKey, m.data));
//   bridge.on("state", (s) => console.log(s, bridge.transport));
//   bridge.send({ text: "hi" }, "chat");
//
// It speaks bridge.v1 over WebSocket and falls back to Server-Sent Events, then to
// long-polling, when a transport is missing, refused, or silent. It reconnects with
// exponential backoff and full jitter, resumes after the last message id it saw, drops
// any message it has already delivered, and obeys the server's reconnect hints.

const ALL_TRANSPORTS = ["ws", "sse", "poll"];

const DEFAULTS = {
  transports: ALL_TRANSPORTS, // tried in this order
  transport: null, // force one of them
  user: null, // dev mode: the user id (?user=)
  token: null, // a JWT, sent as ?token= (WebSocket, EventSource) or Authorization (fetch)
  cursor: null, // resume after this message id (e.g. one kept in sessionStorage)
  topics: null, // routing keys to receive (?topics=), e.g. ["contract"]; null: all of them
  withCredentials: false, // send cookies to another origin (EventSource, fetch)
  openTimeout: 5000, // ms: a transport that says nothing this long counts as failed
  backoffBase: 500, // ms: the first retry waits up to this
  backoffMax: 30000, // ms: no retry waits longer than this
  stableAfter: 10000, // ms: a connection open this long resets the backoff
  pollWait: null, // seconds a poll may wait on the server (server default: 25)
  dedupeWindow: 1000, // ids remembered to drop repeats
  // Delivery receipts (message.received for the backend): true confirms each message
  // once the "message" listeners returned; "manual" leaves it to bridge.ack(id); false
  // never confirms.
  ack: true,
};

const PROTOCOL = "bridge.v1";

// A poll answer that is empty and quicker than this did not wait on the server (a
// proxy in the way, a server restarting): back off before the next one.
const MIN_EMPTY_POLL_MS = 1000;

// Most ids one ack frame or POST /api/ack carries (the server's limit).
const MAX_ACK_IDS = 100;

// How much longer than its wait a poll may take before it counts as lost.
const POLL_GRACE_MS = 10000;

class Unsupported extends Error {}

export class Bridge {
  #base;
  #opts;
  #listeners = new Map();
  #state = "idle";
  #transports;
  #index = 0;
  #transport = null;
  #cursor;
  #seen = new Set();
  #seenOrder = [];
  #attempt = 0;
  #worked = new Set(); // transports that opened at least once
  #hint = null; // ms the server asked us to wait before coming back
  #session = null;
  #timer = null;
  #closed = false;
  #acks = []; // ids to confirm, sent together on the next turn
  #ackTimer = null;

  /**
   * @param {string} url the server ("" or undefined: the page's own origin)
   * @param {object} opts see DEFAULTS
   */
  constructor(url, opts = {}) {
    this.#opts = { ...DEFAULTS, ...opts };
    const here = typeof location !== "undefined" ? location.href : undefined;
    this.#base = new URL(url || "/", here);
    this.#transports = this.#opts.transport ? [this.#opts.transport] : [...this.#opts.transports];
    for (const t of this.#transports) {
      if (!ALL_TRANSPORTS.includes(t)) throw new Error(`bridge: unknown transport ${t}`);
    }
    this.#cursor = this.#opts.cursor || null;
    // Start on the next turn, so listeners added right after construction see it all.
    this.#timer = setTimeout(() => this.#connect(), 0);
  }

  /** The transport in use or being tried: "ws", "sse" or "poll". */
  get transport() { return this.#transport; }
  /** "connecting", "open", "reconnecting" or "closed". */
  get state() { return this.#state; }
  /** The id of the last message delivered: where a reconnect resumes. */
  get cursor() { return this.#cursor; }

  /**
   * on("message" | "state" | "reset" | "welcome" | "subscribed" | "error", fn). Returns a function
   * that removes the listener.
   */
  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.#listeners.get(event).delete(fn);
  }

  /**
   * Sends data (any JSON value; a string is sent as its text) with an optional routing
   * key. Over WebSocket it is a send frame; otherwise POST /api/send, whose refusal
   * rejects the promise.
   */
  async send(data, routingKey) {
    const s = this.#session;
    if (s && s.opened && s.conn && s.conn.canSend && s.conn.canSend()) {
      s.conn.send({ type: "send", routingKey, data });
      return;
    }
    const headers = { "Content-Type": "application/json" };
    if (this.#opts.token) headers.Authorization = `Bearer ${this.#opts.token}`;
    const res = await fetch(this.#url("/api/send", {}, { token: false }), {
      method: "POST", headers, body: JSON.stringify({ routingKey, data }),
      credentials: this.#opts.withCredentials ? "include" : "same-origin",
    });
    if (!res.ok) throw new Error(await errorText(res));
  }

  /**
   * Confirms that the page handled the messages with these ids: the backend gets one
   * message.received per message, however many tabs confirm it. Automatic unless the
   * ack option is "manual" (or false).
   */
  ack(...ids) {
    for (const id of ids.flat()) if (id) this.#acks.push(String(id));
    if (this.#acks.length && this.#ackTimer === null) this.#ackTimer = setTimeout(() => this.#flushAcks(), 0);
  }

  #flushAcks() {
    this.#ackTimer = null;
    while (this.#acks.length) {
      const ids = this.#acks.splice(0, MAX_ACK_IDS);
      const s = this.#session;
      if (s && s.opened && s.conn && s.conn.canSend && s.conn.canSend()) {
        s.conn.send({ type: "ack", ids });
        continue;
      }
      const headers = { "Content-Type": "application/json" };
      if (this.#opts.token) headers.Authorization = `Bearer ${this.#opts.token}`;
      fetch(this.#url("/api/ack", {}, { token: false }), {
        method: "POST", headers, body: JSON.stringify({ ids }),
        credentials: this.#opts.withCredentials ? "include" : "same-origin",
      }).then(async (res) => {
        if (!res.ok) this.#emit("error", new Error(`bridge: ack: ${await errorText(res)}`));
      }, (e) => this.#emit("error", new Error(`bridge: ack: ${e.message}`)));
    }
  }

  /**
   * Replaces the subscription: from now on only messages with these routing keys
   * (null or []: all of them). On WebSocket it is a subscribe frame, answered by a
   * "subscribed" event; SSE and poll carry topics in their URL, so they reconnect at
   * once with the new ones, resuming from the cursor.
   */
  subscribe(topics) {
    this.#opts.topics = topics && topics.length ? [...topics] : null;
    const s = this.#session;
    if (this.#closed || !s) return; // the next connection carries them
    if (s.opened && s.conn && s.conn.canSend && s.conn.canSend()) {
      s.conn.send({ type: "subscribe", topics: this.#opts.topics || [] });
      return;
    }
    this.#end(s);
    clearTimeout(this.#timer);
    this.#connect();
  }

  /** Closes the connection for good. */
  close() {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#end(this.#session);
    this.#setState("closed");
  }

  #emit(event, ...args) {
    for (const fn of this.#listeners.get(event) || []) {
      try { fn(...args); } catch (e) { setTimeout(() => { throw e; }); }
    }
  }

  #setState(s) {
    if (s === this.#state) return;
    this.#state = s;
    this.#emit("state", s, this.#transport);
  }

  #url(path, params, { ws = false, token = true } = {}) {
    const u = new URL(path, this.#base);
    if (ws) u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    if (this.#opts.user) u.searchParams.set("user", this.#opts.user);
    if (this.#opts.token && token) u.searchParams.set("token", this.#opts.token);
    const topics = this.#opts.topics;
    if (topics && topics.length && path !== "/api/send") u.searchParams.set("topics", topics.join(","));
    for (const [k, v] of Object.entries(params)) if (v != null) u.searchParams.set(k, v);
    return u.toString();
  }

  #connect() {
    if (this.#closed) return;
    if (this.#transports.length === 0) {
      this.#emit("error", new Error("bridge: this browser has none of the transports"));
      this.close();
      return;
    }
    const name = this.#transports[this.#index % this.#transports.length];
    this.#transport = name;
    this.#setState(this.#worked.size === 0 && this.#state !== "reconnecting" ? "connecting" : "reconnecting");
    const s = { name, opened: false, openedAt: 0, conn: null, timer: null, done: false };
    this.#session = s;
    const h = {
      open: () => this.#opened(s),
      frame: (f) => { if (!s.done) this.#frame(s, f); },
      end: (why) => this.#failed(s, why),
    };
    s.timer = setTimeout(() => h.end("nothing heard within openTimeout"), this.#opts.openTimeout);
    try {
      s.conn = OPEN[name](this, h);
    } catch (e) {
      clearTimeout(s.timer);
      this.#session = null;
      if (e instanceof Unsupported) {
        // Not in this browser: drop it and try the next one at once, no network spent.
        s.done = true;
        this.#transports.splice(this.#index % this.#transports.length, 1);
        this.#timer = setTimeout(() => this.#connect(), 0);
        return;
      }
      h.end(e.message);
    }
  }

  #opened(s) {
    if (s.done || s.opened) return;
    s.opened = true;
    s.openedAt = Date.now();
    clearTimeout(s.timer);
    this.#worked.add(s.name);
    this.#setState("open");
  }

  #frame(s, f) {
    switch (f.type) {
      case "welcome":
        // A fresh client starts at the server's newest id; one that resumes keeps its own.
        if (!this.#cursor && f.cursor) this.#cursor = f.cursor;
        this.#opened(s);
        this.#emit("welcome", f);
        break;
      case "message":
        if (f.id) {
          if (this.#seen.has(f.id)) return;
          this.#remember(f.id);
          this.#cursor = f.id;
        }
        this.#emit("message", { id: f.id, routingKey: f.routingKey, data: f.data, transport: s.name });
        if (f.id && this.#opts.ack === true) this.ack(f.id); // the listeners have run
        break;
      case "reset":
        this.#emit("reset", f);
        break;
      case "subscribed":
        this.#emit("subscribed", f.topics || []);
        break;
      case "reconnect":
        this.#hint = Math.max(0, Number(f.after_ms) || 0);
        break;
      case "error":
        this.#emit("error", new Error(f.error));
        break;
    }
  }

  #remember(id) {
    this.#seen.add(id);
    this.#seenOrder.push(id);
    while (this.#seenOrder.length > this.#opts.dedupeWindow) this.#seen.delete(this.#seenOrder.shift());
  }

  #end(s) {
    if (!s || s.done) return;
    s.done = true;
    clearTimeout(s.timer);
    if (this.#session === s) this.#session = null;
    try { s.conn && s.conn.close(); } catch { /* already gone */ }
  }

  // failed ends session s and schedules the next attempt.
  #failed(s, why) {
    if (s.done) return;
    this.#end(s);
    if (this.#closed) return;
    if (!s.opened && !this.#worked.has(s.name)) {
      // Never worked here: a proxy or the browser refuses it. Try the next one.
      this.#index = (this.#index + 1) % this.#transports.length;
    }
    const stable = s.opened && Date.now() - s.openedAt >= this.#opts.stableAfter;
    if (stable) this.#attempt = 0;
    // Full jitter, from the first retry on: clients that lost the same server do not
    // come back together.
    const cap = Math.min(this.#opts.backoffMax, this.#opts.backoffBase * 2 ** this.#attempt);
    let delay = Math.random() * cap;
    this.#attempt = Math.min(this.#attempt + 1, 30);
    if (this.#hint !== null) {
      // The server chose the delay (already jittered, to spread its clients). A hint
      // right after a short-lived connection still waits the backoff, so that a server
      // that keeps saying "come back now" cannot make us loop.
      delay = stable ? this.#hint : Math.max(this.#hint, delay);
      this.#hint = null;
    }
    this.#setState("reconnecting");
    this.#emit("error", new Error(`bridge: ${s.name}: ${why}; retrying in ${Math.round(delay)} ms`));
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  // Used by the transports.
  _url(path, params, o) { return this.#url(path, params, o); }
  // Answers an SSE ping event. A lost answer only costs a reconnect, which resumes.
  _pong(token) {
    const headers = { "Content-Type": "application/json" };
    if (this.#opts.token) headers.Authorization = `Bearer ${this.#opts.token}`;
    fetch(this.#url("/api/pong", {}, { token: false }), {
      method: "POST", headers, body: JSON.stringify({ token }),
      credentials: this.#opts.withCredentials ? "include" : "same-origin",
    }).catch(() => {});
  }
  _cursor() { return this.#cursor; }
  _setCursor(c) { if (c) this.#cursor = c; }
  _opts() { return this.#opts; }
}

async function errorText(res) {
  try {
    const b = await res.json();
    if (b && b.error) return b.error;
  } catch { /* not JSON */ }
  return `${res.status} ${res.statusText}`;
}

function parse(text) {
  try { return JSON.parse(text); } catch { return null; }
}

const OPEN = {
  ws(b, h) {
    if (typeof WebSocket !== "function") throw new Unsupported("no WebSocket");
    const ws = new WebSocket(b._url("/ws", { since: b._cursor() }, { ws: true }), PROTOCOL);
    ws.onmessage = (e) => {
      const f = parse(e.data);
      if (f && f.type) h.frame(f);
    };
    ws.onclose = (e) => h.end(`closed (${e.code})`);
    return {
      close() { ws.onclose = null; ws.onmessage = null; ws.close(); },
      send(f) { ws.send(JSON.stringify(f)); },
      canSend() { return ws.readyState === WebSocket.OPEN; },
    };
  },

  sse(b, h) {
    if (typeof EventSource !== "function") throw new Unsupported("no EventSource");
    // pong=1: every heartbeat is a ping event we answer, so the server cuts this
    // stream within two heartbeats once the page stops answering (frozen, suspended).
    const url = b._url("/sse", { protocol: PROTOCOL, lastEventId: b._cursor(), pong: 1 });
    const es = new EventSource(url, { withCredentials: b._opts().withCredentials });
    const on = (type) => (e) => {
      const f = parse(e.data);
      if (f) h.frame({ ...f, type });
    };
    es.addEventListener("welcome", on("welcome"));
    es.addEventListener("reset", on("reset"));
    es.addEventListener("reconnect", on("reconnect"));
    es.addEventListener("ping", (e) => b._pong(e.data));
    es.onmessage = on("message");
    // EventSource would reconnect by itself, but with its own timing and without our
    // cursor after a fallback: close it and reconnect the same way as every transport.
    es.onerror = () => h.end("stream ended");
    return { close() { es.close(); } };
  },

  poll(b, h) {
    if (typeof fetch !== "function" || typeof AbortController !== "function") throw new Unsupported("no fetch");
    const ctrl = new AbortController();
    const opts = b._opts();
    const waitS = opts.pollWait == null ? 25 : opts.pollWait;
    (async () => {
      for (let first = true; !ctrl.signal.aborted; first = false) {
        const started = Date.now();
        // The first poll does not wait: its answer is how we know the transport works.
        const url = b._url("/poll", { cursor: b._cursor(), wait: first ? 0 : opts.pollWait });
        let lost = false;
        const timeout = setTimeout(() => { lost = true; ctrl.abort(); }, waitS * 1000 + POLL_GRACE_MS);
        let ans;
        try {
          const res = await fetch(url, { signal: ctrl.signal, cache: "no-store", credentials: opts.withCredentials ? "include" : "same-origin" });
          if (res.status === 429 && !first) {
            // Over the user's budget of polls (BRIDGE_USER_RATE): poll again when told,
            // from the same cursor, without leaving the transport.
            ans = { retryAfterMs: 1000 * (parseInt(res.headers.get("Retry-After"), 10) || 1) };
          } else {
            if (!res.ok) throw new Error(await errorText(res));
            ans = await res.json();
          }
        } catch (e) {
          if (!ctrl.signal.aborted || lost) h.end(lost ? "poll lost" : `poll failed: ${e.message}`);
          return;
        } finally {
          clearTimeout(timeout);
        }
        if (ans.retryAfterMs) {
          await new Promise((r) => setTimeout(r, ans.retryAfterMs));
          continue;
        }
        if (first) h.open();
        if (ans.reset) h.frame({ type: "reset", reason: ans.reason });
        for (const m of ans.messages || []) h.frame(m);
        b._setCursor(ans.cursor);
        if (ans.reconnect) {
          h.frame(ans.reconnect);
          h.end("server asked to reconnect");
          return;
        }
        if (!first && (ans.messages || []).length === 0 && Date.now() - started < MIN_EMPTY_POLL_MS) {
          await new Promise((r) => setTimeout(r, MIN_EMPTY_POLL_MS));
        }
      }
    })();
    return { close() { ctrl.abort(); } };
  },
};

/** connect(url, opts) is new Bridge(url, opts). */
export function connect(url, opts) { return new Bridge(url, opts); }
