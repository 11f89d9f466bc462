// huddle.js: a browser client for the huddle signaling protocol, version 1.
//
// One ES module, no dependencies, no build step. It joins a room over a
// WebSocket, keeps a mesh of RTCPeerConnections (one per remote peer) with the
// project's negotiation convention (the newcomer offers, perfect negotiation,
// the polite peer is the one whose id sorts lower), reconnects with backoff and
// resumes its session, restarts ICE after a resume, and reports everything as
// events. API and example: docs/js-client.md. Wire contract: PROTOCOL.md.

/** The WebSocket subprotocol of protocol version 1. */
export const SUBPROTOCOL = "huddle.v1";

const BEARER_PREFIX = "bearer.";
const ROOM_RE = /^[A-Za-z0-9._~-]{1,64}$/;
const MAX_NAME = 64;
const MAX_OUTBOX = 256;
const KINDS = ["audio", "video"];

// Close codes after which reconnecting cannot help: [error code, message].
const FINAL_CLOSES = new Map([
  [1003, ["protocol", "the server refused a binary frame"]],
  [1007, ["protocol", "the server refused a frame that is not valid UTF-8"]],
  [1008, ["policy", "the server closed the connection: too many messages (rate limit)"]],
  [4003, ["kicked", "you were removed from the room by its administrator"]],
  [4010, ["replaced", "this session was resumed on another connection (another tab?)"]],
]);

const DEFAULTS = {
  name: "",
  meta: undefined,
  token: undefined,
  stream: null,
  relay: false,
  rtcConfig: {},
  pingInterval: 10000,
  pingTimeout: 25000,
  connectTimeout: 10000,
  reconnectBase: 500,
  reconnectMax: 8000,
  leaveOnPageHide: true,
};

/**
 * HuddleError is what join() rejects with and what the `closed` event carries
 * when the client stops for good. `code` is machine-readable: a server error
 * code (`room-full`, `forbidden`, ...), `unauthorized` (HTTP 401),
 * `origin` (HTTP 403), `refused` (another 4xx), `kicked`, `replaced`,
 * `policy`, `protocol`, `token` (the token function failed) or `bad-option`.
 * `status` is the HTTP status of a refused handshake when it could be learnt.
 */
export class HuddleError extends Error {
  constructor(code, message, { status, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "HuddleError";
    this.code = code;
    this.status = status;
  }
}

/**
 * Huddle is one client: one signaling session in one room and one
 * RTCPeerConnection per remote peer. It is an EventTarget; every event is a
 * CustomEvent whose `detail` is described in docs/js-client.md.
 */
export class Huddle extends EventTarget {
  #opts;
  #state = "idle";
  #ws = null;
  #id = null;
  #room;
  #resume = "";
  #iceServers = [];
  #peers = new Map();
  #outbox = [];
  #attempt = 0;
  #connSeq = 0;
  #joinRef = "";
  #joinWaiters = null;
  #timers = new Set();
  #pingTimer = 0;
  #pingSentAt = 0; // when the oldest ping without a frame after it went out
  #lastRx = 0;
  #retryTimer = 0;
  #stream;
  #unauthorized = 0;
  #refusals = 0; // unexplained refusals before the first welcome
  #onPageHide = () => this.leave();
  #onOnline = () => this.#retryNow();

  /**
   * @param {object} options
   * @param {string} options.url WebSocket URL of the server's /ws endpoint.
   * @param {string} options.room Room to join: 1 to 64 of [A-Za-z0-9._~-].
   * @param {string} [options.name] Display name (at most 64 characters).
   * @param {object} [options.meta] Shown to the others (at most 1024 bytes of JSON).
   * @param {string|function(): (string|Promise<string>)} [options.token]
   *   JWT, or a function called before every connection attempt.
   * @param {MediaStream} [options.stream] Local media to send; none: receive only.
   * @param {boolean} [options.relay] Force TURN (iceTransportPolicy "relay").
   * @param {RTCConfiguration} [options.rtcConfig] Merged into every
   *   RTCPeerConnection's configuration; its iceServers are added to the server's.
   */
  constructor(options) {
    super();
    if (!options || typeof options.url !== "string" || options.url === "") {
      throw new HuddleError("bad-option", "huddle: options.url is required");
    }
    this.#opts = { ...DEFAULTS, ...options };
    this.#room = this.#opts.room;
    this.#stream = this.#opts.stream || null;
  }

  /** The client's state: idle, connecting, joined, reconnecting or closed. */
  get state() { return this.#state; }
  /** This peer's id, chosen by the server; null before the first welcome. */
  get id() { return this.#id; }
  /** The room. */
  get room() { return this.#room; }
  /** The remote peers by id (a live Map: read, do not modify). */
  get peers() { return this.#peers; }
  /** The local MediaStream being sent, or null. */
  get stream() { return this.#stream; }
  /** The ICE servers of the last welcome. */
  get iceServers() { return this.#iceServers; }

  /**
   * join connects and enters the room. It resolves with the first welcome's
   * detail, or rejects with a HuddleError when the server refuses for good.
   * Network failures do not reject: the client keeps retrying (see the
   * `reconnecting` event) until leave() is called.
   */
  join() {
    if (this.#joinWaiters) return this.#joinWaiters.promise;
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    this.#joinWaiters = { promise, resolve, reject, settled: false };
    const problem = this.#checkOptions();
    if (problem) {
      this.#fail(new HuddleError("bad-option", problem));
      return promise;
    }
    if (this.#opts.leaveOnPageHide) addEventListener("pagehide", this.#onPageHide);
    addEventListener("online", this.#onOnline);
    this.#setState("connecting");
    this.#connect();
    return promise;
  }

  /** leave sends `leave`, closes every peer connection and stops the client. */
  leave() {
    if (this.#state === "closed") return;
    const ws = this.#ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "leave" }));
    }
    this.#finish({ code: 1000, reason: "left" });
  }

  /**
   * send sends application data (any JSON value) to one peer (`to`) or to
   * every other peer in the room. While the client reconnects, messages wait
   * in a bounded queue and go out after the session resumed.
   */
  send(data, to) {
    if (data === undefined) throw new HuddleError("bad-option", "huddle: send needs data");
    if (this.#state === "idle" || this.#state === "closed") {
      throw new HuddleError("not-joined", "huddle: not in a room");
    }
    const msg = { type: "message", data };
    if (to !== undefined) msg.to = to;
    this.#send(msg);
  }

  /**
   * setStream replaces the local media on every peer connection (null: stop
   * sending). Renegotiates where the set of sent kinds changes.
   */
  async setStream(stream) {
    this.#stream = stream || null;
    await Promise.all([...this.#peers.values()].map((p) => p._setStream(this.#stream)));
  }

  /**
   * reconnect drops the signaling connection without leaving and connects
   * again at once, resuming the session. Peer connections are kept. Useful
   * after a network change.
   */
  reconnect() {
    if (this.#state !== "joined" && this.#state !== "reconnecting") return;
    const ws = this.#ws;
    if (ws) this.#drop(ws, 4000, "reconnect requested", true);
    else this.#retryNow();
  }

  /** restartIce restarts ICE with one peer, or with every peer. */
  restartIce(peerId) {
    for (const p of this.#peers.values()) {
      if (peerId === undefined || p.id === peerId) p._restartIce(true);
    }
  }

  // ---- connection ----

  #checkOptions() {
    const o = this.#opts;
    if (typeof o.room !== "string" || !ROOM_RE.test(o.room)) {
      return "huddle: the room must be 1 to 64 characters of A-Z a-z 0-9 . _ ~ -";
    }
    if (typeof o.name !== "string" || [...o.name].length > MAX_NAME) {
      return "huddle: the name must be a string of at most 64 characters";
    }
    if (o.meta !== undefined && (o.meta === null || typeof o.meta !== "object" || Array.isArray(o.meta))) {
      return "huddle: meta must be an object";
    }
    return "";
  }

  async #connect() {
    const seq = ++this.#connSeq;
    let token;
    try {
      token = await this.#token();
    } catch (err) {
      this.#fail(new HuddleError("token", `huddle: could not get a token: ${err.message || err}`, { cause: err }));
      return;
    }
    if (seq !== this.#connSeq || this.#state === "closed") return;
    const protocols = [SUBPROTOCOL];
    if (token) protocols.push(BEARER_PREFIX + token);
    let ws;
    try {
      ws = new WebSocket(this.#opts.url, protocols);
    } catch (err) {
      this.#fail(new HuddleError("bad-option", `huddle: cannot open ${this.#opts.url}: ${err.message}`, { cause: err }));
      return;
    }
    this.#ws = ws;
    let opened = false;
    const connectTimer = this.#after(this.#opts.connectTimeout, () => {
      this.#drop(ws, 4000, opened ? "no welcome" : "connect timeout");
    });
    ws.onopen = () => {
      opened = true;
      this.#lastRx = performance.now();
      this.#sendJoin(ws);
      this.#startPing(ws);
    };
    ws.onmessage = (ev) => {
      if (ws !== this.#ws) return;
      this.#lastRx = performance.now();
      if (this.#handleFrame(ev.data) === "welcome") this.#cancel(connectTimer);
    };
    ws.onclose = (ev) => {
      this.#cancel(connectTimer);
      if (ws !== this.#ws) return;
      this.#lost(ev.code, ev.reason, opened);
    };
  }

  async #token() {
    const t = this.#opts.token;
    if (typeof t === "function") return await t();
    return t || "";
  }

  #sendJoin(ws) {
    this.#joinRef = `join-${this.#connSeq}`;
    const msg = { type: "join", room: this.#room, ref: this.#joinRef };
    if (this.#opts.name) msg.name = this.#opts.name;
    if (this.#opts.meta !== undefined) msg.meta = this.#opts.meta;
    if (this.#resume) msg.resume = this.#resume;
    ws.send(JSON.stringify(msg));
  }

  // startPing pings the server: browsers cannot see WebSocket pings, and a
  // socket whose network vanished can look open for minutes. The socket is
  // dead when a ping has had no frame after it for pingTimeout. Measuring
  // from the ping, not from the last frame, keeps a throttled timer in a
  // background tab from declaring a healthy socket dead.
  #startPing(ws) {
    clearInterval(this.#pingTimer);
    this.#pingSentAt = 0;
    const every = Math.max(250, Math.min(this.#opts.pingInterval, this.#opts.pingTimeout / 2));
    this.#pingTimer = setInterval(() => {
      if (ws !== this.#ws) return;
      const now = performance.now();
      if (this.#pingSentAt && this.#lastRx < this.#pingSentAt && now - this.#pingSentAt > this.#opts.pingTimeout) {
        this.#drop(ws, 4000, "ping timeout");
        return;
      }
      if (!this.#pingSentAt || this.#lastRx >= this.#pingSentAt) this.#pingSentAt = now;
      ws.send('{"type":"ping"}');
    }, every);
  }

  // drop abandons a socket that may be dead (its close event can take minutes)
  // and handles it as lost at once; immediate skips the backoff.
  #drop(ws, code, reason, immediate = false) {
    if (ws !== this.#ws) return;
    const opened = ws.readyState !== WebSocket.CONNECTING;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(code, reason); } catch { /* closing a dead socket */ }
    this.#lost(immediate ? 1012 : 1006, reason, opened);
  }

  // lost decides what follows the end of the signaling connection.
  async #lost(code, reason, opened) {
    this.#ws = null;
    clearInterval(this.#pingTimer);
    if (this.#state === "closed") return;
    const final = FINAL_CLOSES.get(code);
    if (final) {
      this.#fail(new HuddleError(final[0], final[1]), code);
      return;
    }
    let why = reason || `connection closed (${code})`;
    if (!opened) {
      const refusal = await this.#diagnose();
      if (this.#state === "closed") return;
      if (refusal.fatal) {
        this.#fail(refusal.error);
        return;
      }
      why = refusal.message;
    }
    if (this.#state === "joined") this.#setState("reconnecting");
    const delay = code === 1012 ? Math.random() * 250 : this.#backoff();
    this.#emit("reconnecting", { attempt: this.#attempt, delay, code, reason: why });
    this.#retryTimer = this.#after(delay, () => this.#connect());
  }

  #backoff() {
    const n = this.#attempt++;
    const ceiling = Math.min(this.#opts.reconnectMax, this.#opts.reconnectBase * 2 ** n);
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }

  #retryNow() {
    if (this.#state !== "reconnecting" && this.#state !== "connecting") return;
    if (this.#ws || !this.#retryTimer) return;
    this.#cancel(this.#retryTimer);
    this.#retryTimer = 0;
    this.#connect();
  }

  // diagnose learns why a handshake failed. A browser sees only a failed
  // WebSocket, never the HTTP answer, so it asks the same URL again with
  // fetch, which does see the status and the server's one-line reason.
  async #diagnose() {
    const url = this.#opts.url.replace(/^ws(s?):/i, "http$1:");
    let res, text;
    try {
      const headers = {};
      const token = await this.#token();
      if (token) headers.Authorization = `Bearer ${token}`;
      const signal = AbortSignal.timeout(this.#opts.connectTimeout);
      res = await fetch(url, { headers, cache: "no-store", redirect: "manual", signal });
      text = (await res.text()).trim().split("\n")[0].slice(0, 200);
    } catch {
      return { fatal: false, message: "the server cannot be reached" };
    }
    const why = text ? `: ${text}` : "";
    const st = res.status;
    if (st === 401) {
      // A token function may hand out a fresh token: give it a second chance.
      const again = typeof this.#opts.token === "function" && ++this.#unauthorized < 2;
      const error = new HuddleError("unauthorized", `the server wants a valid token (HTTP 401${why})`, { status: st });
      return again ? { fatal: false, message: error.message } : { fatal: true, error };
    }
    if (st === 403) {
      return { fatal: true, error: new HuddleError("origin", `the server refused this page (HTTP 403${why}); is its origin in HUDDLE_ALLOWED_ORIGINS?`, { status: st }) };
    }
    if (st === 429) return { fatal: false, message: `too many connections from this address (HTTP 429${why})` };
    if (st === 503) return { fatal: false, message: `the server is draining or not ready (HTTP 503${why})` };
    if (st >= 500 || st === 0) return { fatal: false, message: `the server failed (HTTP ${st}${why})` };
    if (st >= 400 && this.#id === null && ++this.#refusals >= 3) {
      // fetch cannot send Upgrade or (for a same-origin GET) Origin, so this
      // answer shows only that the server is up: the WebSocket was refused
      // for the page's origin, or for a token checked after the upgrade test.
      return { fatal: true, error: new HuddleError("refused", `the server refused the connection; check that this page's origin is in HUDDLE_ALLOWED_ORIGINS and that the token is valid (a plain request to the same URL answers HTTP ${st}${why})`, { status: st }) };
    }
    return { fatal: false, message: `the WebSocket handshake failed (HTTP ${st}${why})` };
  }

  // ---- messages from the server ----

  #handleFrame(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return "";
    }
    if (!msg || typeof msg.type !== "string") return "";
    switch (msg.type) {
      case "welcome": this.#onWelcome(msg); break;
      case "peer-joined": this.#onPeerJoined(msg.peer); break;
      case "peer-left": this.#onPeerLeft(msg.id, msg.reason); break;
      case "offer":
      case "answer":
      case "candidate": this.#onSignal(msg); break;
      case "message": this.#emit("message", { from: msg.from, to: msg.to, data: msg.data }); break;
      case "error": this.#onError(msg); break;
      default: break; // pong, and types of later versions
    }
    return msg.type;
  }

  #onWelcome(msg) {
    const resumed = msg.resumed === true && msg.id === this.#id;
    if (!resumed && this.#id !== null) this.#reset();
    this.#id = msg.id;
    this.#room = msg.room || this.#room;
    this.#resume = msg.resume || "";
    this.#iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
    this.#attempt = 0;
    this.#unauthorized = 0;
    const peers = Array.isArray(msg.peers) ? msg.peers : [];
    if (resumed) {
      this.#reconcile(peers);
    } else {
      for (const info of peers) this.#addPeer(info)._start();
    }
    this.#flushOutbox(resumed);
    this.#setState("joined");
    const detail = { id: this.#id, room: this.#room, peers: [...this.#peers.values()], resumed };
    this.#emit("welcome", detail);
    if (this.#joinWaiters && !this.#joinWaiters.settled) {
      this.#joinWaiters.settled = true;
      this.#joinWaiters.resolve(detail);
    }
    if (resumed) {
      for (const p of this.#peers.values()) p._afterResume();
    }
  }

  // reset forgets a session the server no longer knows (resume failed).
  #reset() {
    for (const p of [...this.#peers.values()]) this.#removePeer(p, "reset");
    this.#outbox = this.#outbox.filter((m) => m.type === "message" && m.to === undefined);
  }

  // reconcile brings the peer set in line with a resumed welcome. Peers that
  // joined meanwhile will send their offer (queued by the server); peers gone
  // meanwhile are dropped with the reason "gone".
  #reconcile(peers) {
    const current = new Map(peers.map((p) => [p.id, p]));
    for (const p of [...this.#peers.values()]) {
      if (!current.has(p.id)) this.#removePeer(p, "gone");
    }
    for (const info of peers) {
      const p = this.#peers.get(info.id);
      if (p) p._update(info, this.#rtcConfig());
      else this.#addPeer(info);
    }
  }

  #onPeerJoined(info) {
    if (!info || typeof info.id !== "string" || info.id === this.#id) return;
    const known = this.#peers.get(info.id);
    if (known) {
      known._update(info);
      return;
    }
    this.#addPeer(info); // it will offer: wait for it
  }

  #onPeerLeft(id, reason) {
    const p = this.#peers.get(id);
    if (p) this.#removePeer(p, reason || "left");
  }

  #onSignal(msg) {
    if (typeof msg.from !== "string" || msg.from === this.#id) return;
    let p = this.#peers.get(msg.from);
    if (!p) {
      if (msg.type !== "offer") return; // stale: that peer is gone
      p = this.#addPeer({ id: msg.from, name: "" });
    }
    p._signal(msg);
  }

  #onError(msg) {
    const detail = { code: msg.code, message: msg.message, ref: msg.ref };
    if (msg.ref && msg.ref === this.#joinRef && this.#state !== "joined") {
      const text = msg.code === "room-full" ? `the room is full (${msg.message})`
        : msg.code === "forbidden" ? `your token does not allow this room (${msg.message})`
          : `the server refused to join: ${msg.message}`;
      this.#fail(new HuddleError(msg.code || "refused", text));
      return;
    }
    this.#emit("error", detail);
  }

  // ---- peers ----

  #addPeer(info) {
    const p = new Peer(info, {
      polite: () => byteLess(this.#id, info.id),
      config: () => this.#rtcConfig(),
      stream: () => this.#stream,
      send: (m) => this.#send(m),
      emit: (type, detail) => this.#emit(type, detail),
      joined: () => this.#state === "joined",
    });
    this.#peers.set(p.id, p);
    this.#emit("peer-joined", { peer: p });
    return p;
  }

  #removePeer(p, reason) {
    this.#peers.delete(p.id);
    p._close();
    this.#emit("peer-left", { peer: p, id: p.id, reason });
  }

  #rtcConfig() {
    const extra = this.#opts.rtcConfig || {};
    const config = { ...extra, iceServers: [...this.#iceServers, ...(extra.iceServers || [])] };
    if (this.#opts.relay) config.iceTransportPolicy = "relay";
    return config;
  }

  // ---- sending ----

  #send(msg) {
    const ws = this.#ws;
    if (this.#state === "joined" && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(msg));
      return;
    }
    if (this.#outbox.length >= MAX_OUTBOX) {
      this.#emit("error", { code: "queue-full", message: "huddle: offline queue full, message dropped" });
      return;
    }
    this.#outbox.push(msg);
  }

  #flushOutbox(resumed) {
    let out = this.#outbox;
    this.#outbox = [];
    if (!resumed) {
      out = out.filter((m) => m.type === "message" && (m.to === undefined || this.#peers.has(m.to)));
    }
    for (const m of out) this.#ws.send(JSON.stringify(m));
  }

  // ---- the end ----

  #fail(error, code) {
    if (this.#joinWaiters && !this.#joinWaiters.settled) {
      this.#joinWaiters.settled = true;
      this.#joinWaiters.reject(error);
    }
    this.#finish({ code: code ?? 0, reason: error.message, error });
  }

  #finish(detail) {
    if (this.#state === "closed") return;
    this.#connSeq++;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try { ws.close(1000, detail.reason === "left" ? "leave" : ""); } catch { /* already closed */ }
    }
    clearInterval(this.#pingTimer);
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    removeEventListener("pagehide", this.#onPageHide);
    removeEventListener("online", this.#onOnline);
    for (const p of [...this.#peers.values()]) this.#removePeer(p, "closed");
    this.#outbox = [];
    this.#setState("closed");
    this.#emit("closed", detail);
    if (this.#joinWaiters && !this.#joinWaiters.settled) {
      this.#joinWaiters.settled = true;
      this.#joinWaiters.reject(new HuddleError("closed", "huddle: left before the room was joined"));
    }
  }

  // ---- helpers ----

  #setState(state) {
    if (state === this.#state) return;
    const previous = this.#state;
    this.#state = state;
    this.#emit("state", { state, previous });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #after(ms, fn) {
    const t = setTimeout(() => { this.#timers.delete(t); fn(); }, ms);
    this.#timers.add(t);
    return t;
  }

  #cancel(t) {
    clearTimeout(t);
    this.#timers.delete(t);
  }
}

/**
 * Peer is one remote peer and its RTCPeerConnection. Read its fields; the
 * methods whose names start with an underscore belong to Huddle.
 */
// CHANNEL_LABEL names the data channel each pair opens (see Peer.channel).
const CHANNEL_LABEL = "huddle";

export class Peer {
  /** The peer's id. */ id;
  /** Its display name. */ name;
  /** Its meta object, or undefined. */ meta;
  /** The RTCPeerConnection, or null until negotiation starts. */ pc = null;
  /** A MediaStream of the tracks this peer sends us. */ stream = new MediaStream();
  /** The connection's state (RTCPeerConnection.connectionState). */ connectionState = "new";
  /**
   * The "huddle" RTCDataChannel of the pair, or null until there is one.
   * The newcomer opens it with its first offer (the Go client does the
   * same), so that either side sees a channel open once the pair is
   * connected; `huddle-peer join --expect` waits for it.
   */ channel = null;

  #ctx;
  #chain = Promise.resolve();
  #makingOffer = false;
  #ignoreOffer = false;
  #pending = [];
  #senders = new Map(); // kind -> the transceiver this side sends that kind on
  #lastRestart = -Infinity;
  // offered: this side has had a local offer applied. Chromium (seen in
  // 156) stops rendering the remote video of a connection whose first local
  // offer it rolls back, although it keeps decoding; once one offer went
  // through, rollbacks are harmless. So a polite side, the one that rolls
  // back, makes one no-op offer as soon as it has answered the first time,
  // while nothing else is in flight.
  #offered = false;
  #closed = false;

  constructor(info, ctx) {
    this.id = info.id;
    this.name = typeof info.name === "string" ? info.name : "";
    this.meta = info.meta;
    this.#ctx = ctx;
  }

  /** Whether this side is the polite one of the pair (its id sorts lower). */
  get polite() { return this.#ctx.polite(); }

  /**
   * stats summarises getStats(): the selected candidate pair (`pairType`:
   * host, srflx or relay; the local and remote candidate types, protocol),
   * `rtt` in seconds, and the cumulative `bytesSent`/`bytesReceived` with
   * their `timestamp` (ms) for rates. Null without a connection.
   */
  async stats() {
    if (!this.pc) return null;
    return summarizeStats(await this.pc.getStats());
  }

  // ---- used by Huddle ----

  // start makes this side the offerer: it is the newcomer.
  _start() {
    const pc = this.#ensurePC();
    const stream = this.#ctx.stream();
    for (const kind of KINDS) {
      const track = trackOf(stream, kind);
      const init = { direction: track ? "sendrecv" : "recvonly", streams: stream ? [stream] : [] };
      this.#senders.set(kind, pc.addTransceiver(track || kind, init));
    }
    this.#watchChannel(pc.createDataChannel(CHANNEL_LABEL));
  }

  #watchChannel(ch) {
    if (ch.label !== CHANNEL_LABEL) return;
    this.channel = ch;
    ch.onopen = () => this.#ctx.emit("datachannel", { peer: this, channel: ch });
  }

  _signal(msg) {
    this.#chain = this.#chain
      .then(() => this.#handle(msg))
      .catch((err) => this.#ctx.emit("peer-error", { peer: this, error: err }));
  }

  _update(info, config) {
    if (typeof info.name === "string") this.name = info.name;
    if (info.meta !== undefined) this.meta = info.meta;
    if (config && this.pc) {
      try {
        this.pc.setConfiguration(config);
      } catch (err) {
        this.#ctx.emit("peer-error", { peer: this, error: err });
      }
    }
  }

  _afterResume() {
    const s = this.pc && this.pc.connectionState;
    if (s === "failed" || s === "disconnected") this._restartIce(true);
  }

  _restartIce(force) {
    if (!this.pc || this.#closed) return;
    const now = performance.now();
    if (!force && now - this.#lastRestart < 5000) return;
    this.#lastRestart = now;
    this.pc.restartIce();
  }

  async _setStream(stream) {
    if (!this.pc || this.#closed) return;
    for (const kind of KINDS) {
      const track = trackOf(stream, kind);
      const tr = this.#senders.get(kind);
      if (!tr) {
        if (track) this.#senders.set(kind, this.pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] }));
        continue;
      }
      await tr.sender.replaceTrack(track);
      tr.sender.setStreams(...(stream ? [stream] : []));
      const want = track ? "sendrecv" : "recvonly";
      if (tr.direction !== want) tr.direction = want;
    }
  }

  _close() {
    this.#closed = true;
    if (this.pc) this.pc.close();
    for (const t of this.stream.getTracks()) t.stop();
    this.connectionState = "closed";
  }

  // ---- negotiation ----

  #ensurePC() {
    if (this.pc) return this.pc;
    const pc = new RTCPeerConnection(this.#ctx.config());
    this.pc = pc;
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && candidate.candidate === "") return; // per-generation end; null follows
      this.#ctx.send({ type: "candidate", to: this.id, candidate: candidate ? candidate.toJSON() : null });
    };
    pc.onnegotiationneeded = () => this.#offer();
    pc.ontrack = ({ track }) => this.#addTrack(track);
    pc.ondatachannel = ({ channel }) => this.#watchChannel(channel);
    pc.onsignalingstatechange = () => {
      if (pc.signalingState === "stable") this.#syncStream();
    };
    pc.onconnectionstatechange = () => {
      this.connectionState = pc.connectionState;
      this.#ctx.emit("peer-state", { peer: this, state: pc.connectionState });
      if (pc.connectionState === "failed" && this.#ctx.joined()) this._restartIce(false);
    };
    return pc;
  }

  async #offer() {
    const pc = this.pc;
    if (this.#closed) return;
    try {
      this.#makingOffer = true;
      await pc.setLocalDescription();
      if (pc.localDescription.type !== "offer") return;
      this.#offered = true;
      this.#ctx.send({ type: "offer", to: this.id, sdp: pc.localDescription.sdp });
    } catch (err) {
      this.#ctx.emit("peer-error", { peer: this, error: err });
    } finally {
      this.#makingOffer = false;
    }
  }

  // handle applies one offer, answer or candidate: the perfect negotiation
  // pattern (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example),
  // with remote candidates held until the remote description is set.
  async #handle(msg) {
    if (this.#closed) return;
    const pc = this.#ensurePC();
    if (msg.type === "candidate") {
      if (!pc.remoteDescription) {
        this.#pending.push(msg.candidate);
        return;
      }
      await this.#addCandidate(msg.candidate);
      return;
    }
    if (typeof msg.sdp !== "string") return;
    const collision = msg.type === "offer" && (this.#makingOffer || pc.signalingState !== "stable");
    this.#ignoreOffer = !this.polite && collision;
    if (this.#ignoreOffer) return;
    if (msg.type === "answer" && pc.signalingState !== "have-local-offer") return; // stale
    await pc.setRemoteDescription({ type: msg.type, sdp: msg.sdp });
    if (msg.type === "offer") {
      await this.#claimTransceivers();
      await pc.setLocalDescription();
      this.#ctx.send({ type: "answer", to: this.id, sdp: pc.localDescription.sdp });
      if (this.polite && !this.#offered) this.#offer(); // see #offered
    }
    const held = this.#pending;
    this.#pending = [];
    for (const c of held) await this.#addCandidate(c);
  }

  async #addCandidate(c) {
    try {
      if (c === null || c === undefined) await this.pc.addIceCandidate();
      else await this.pc.addIceCandidate(c);
    } catch (err) {
      // Candidates of an offer this side ignored cannot apply; the others
      // are worth reporting.
      if (!this.#ignoreOffer) this.#ctx.emit("peer-error", { peer: this, error: err });
    }
  }

  // claimTransceivers attaches local tracks to the transceivers the remote
  // offer created, so the answer sends them without another round.
  async #claimTransceivers() {
    const pc = this.pc;
    const stream = this.#ctx.stream();
    for (const kind of KINDS) {
      if (this.#senders.has(kind)) continue;
      const track = trackOf(stream, kind);
      const tr = pc.getTransceivers().find((t) => !t.stopped && t.receiver.track.kind === kind &&
        !t.sender.track && ![...this.#senders.values()].includes(t));
      if (tr) {
        this.#senders.set(kind, tr);
        if (track) {
          await tr.sender.replaceTrack(track);
          tr.sender.setStreams(stream);
          tr.direction = "sendrecv";
        }
      } else if (track) {
        // The offer has no line of this kind: add one, negotiated next.
        this.#senders.set(kind, pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] }));
      }
    }
  }

  #addTrack(track) {
    if (this.stream.getTrackById(track.id)) return;
    this.stream.addTrack(track);
    this.#ctx.emit("track", { peer: this, track, stream: this.stream });
  }

  // syncStream keeps the stream to the tracks this peer currently sends.
  #syncStream() {
    const live = new Set();
    for (const t of this.pc.getTransceivers()) {
      const d = t.currentDirection;
      if (!t.stopped && (d === "sendrecv" || d === "recvonly")) live.add(t.receiver.track);
    }
    for (const t of this.stream.getTracks()) {
      if (!live.has(t)) {
        this.stream.removeTrack(t);
        this.#ctx.emit("track", { peer: this, track: t, stream: this.stream, removed: true });
      }
    }
    for (const t of live) this.#addTrack(t);
  }
}

/**
 * summarizeStats turns an RTCStatsReport into the summary Peer.stats returns.
 */
export function summarizeStats(report) {
  const out = {
    timestamp: 0, pairType: "", local: "", remote: "", protocol: "", relayProtocol: "",
    rtt: null, bytesSent: 0, bytesReceived: 0, video: null,
  };
  let pair = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
  });
  if (!pair) {
    report.forEach((s) => {
      if (s.type === "candidate-pair" && s.state === "succeeded" && (s.nominated || s.selected)) pair = pair || s;
    });
  }
  if (pair) {
    const l = report.get(pair.localCandidateId) || {};
    const r = report.get(pair.remoteCandidateId) || {};
    out.timestamp = pair.timestamp;
    out.local = l.candidateType || "";
    out.remote = r.candidateType || "";
    out.protocol = l.protocol || "";
    out.relayProtocol = l.relayProtocol || "";
    out.pairType = pairType(out.local, out.remote);
    out.rtt = typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime : null;
    out.bytesSent = pair.bytesSent || 0;
    out.bytesReceived = pair.bytesReceived || 0;
  }
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video" && s.frameWidth) {
      out.video = { width: s.frameWidth, height: s.frameHeight, fps: s.framesPerSecond || 0, frames: s.framesDecoded || 0 };
    }
    if (!out.timestamp && s.timestamp) out.timestamp = s.timestamp;
  });
  return out;
}

// pairType names a candidate pair by its most indirect side.
function pairType(local, remote) {
  const types = [local, remote];
  if (types.includes("relay")) return "relay";
  if (types.includes("srflx") || types.includes("prflx")) return "srflx";
  if (local || remote) return "host";
  return "";
}

function trackOf(stream, kind) {
  if (!stream) return null;
  return stream.getTracks().find((t) => t.kind === kind && t.readyState === "live") || null;
}

const utf8 = new TextEncoder();

// byteLess compares two strings as UTF-8 byte strings, as the protocol's
// politeness rule says.
export function byteLess(a, b) {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    if (x[i] !== y[i]) return x[i] < y[i];
  }
  return x.length < y.length;
}
