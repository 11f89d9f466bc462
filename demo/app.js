// app.js: the huddle demo page. It drives huddle.js and shows what it does:
// a video grid, chat over signaling messages and per-peer diagnostics.
//
// URL hooks (handy for people and used by the browser tests):
//   ?room=NAME      the room (the page keeps it in the URL)
//   &autojoin=1     join without a click
//   &relay=1        force TURN (iceTransportPolicy "relay")
//   &name=N         the display name
//   #token=JWT      a join token (in the fragment, so it is not sent to servers)

import { Huddle } from "./huddle.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const ROOM_RE = /^[A-Za-z0-9._~-]{1,64}$/;
const STATS_EVERY_MS = 1000;

const ui = {
  form: $("join-form"), room: $("room"), name: $("name"), relay: $("relay"),
  join: $("join"), leave: $("leave"), share: $("share"), status: $("status"),
  notices: $("notices"), grid: $("grid"), localTile: $("local-tile"),
  localVideo: $("local-video"), localBadge: $("local-badge"),
  mic: $("mic"), cam: $("cam"), sound: $("sound"),
  chatLog: $("chat-log"), chatForm: $("chat-form"), chatInput: $("chat-input"), chatSend: $("chat-send"),
  diagRows: $("diag-rows"), tileTemplate: $("tile-template"),
};

let client = null;
let joining = false; // waiting for the camera before the client exists
let localStream = null;
let statsTimer = 0;
const tiles = new Map(); // peer id -> tile element
const lastStats = new Map(); // peer id -> previous stats summary

// The page's state for people debugging it in the console, and for tests.
window.huddleDemo = {
  get client() { return client; },
  get localStream() { return localStream; },
  join: () => join(),
  leave: () => leave(),
};

init();

function init() {
  ui.room.value = params.get("room") || randomRoom();
  ui.name.value = params.get("name") || localStorage.getItem("huddle.name") || "";
  ui.relay.checked = params.get("relay") === "1";
  ui.form.addEventListener("submit", (ev) => { ev.preventDefault(); join(); });
  ui.leave.addEventListener("click", () => leave());
  ui.share.addEventListener("click", () => share());
  ui.mic.addEventListener("click", () => toggle("audio", ui.mic, "Mic"));
  ui.cam.addEventListener("click", () => toggle("video", ui.cam, "Camera"));
  ui.sound.addEventListener("click", () => enableSound());
  ui.chatForm.addEventListener("submit", (ev) => { ev.preventDefault(); sendChat(); });
  if (params.get("autojoin") === "1" && params.get("room")) join();
}

// ---- joining and leaving ----

async function join() {
  if (client || joining) return;
  const room = ui.room.value.trim();
  if (!ROOM_RE.test(room)) {
    notice("error", "A room name is 1 to 64 characters of letters, digits and . _ ~ -", { key: "form" });
    return;
  }
  const name = ui.name.value.trim().slice(0, 64);
  if (name) localStorage.setItem("huddle.name", name);
  keepInURL(room);
  setJoining(true);
  clearNotice("form");
  showState("media");
  joining = true;
  const stream = await getMedia();
  if (!joining) { // Leave was pressed meanwhile
    if (stream) for (const t of stream.getTracks()) t.stop();
    return;
  }
  joining = false;
  localStream = stream;
  client = new Huddle({
    url: signalingURL(),
    room,
    name,
    token: fragment.get("token") || undefined,
    stream: localStream,
    relay: ui.relay.checked,
  });
  listen(client);
  showLocal();
  try {
    await client.join();
  } catch {
    // The closed event shows why.
  }
}

function leave() {
  if (client) {
    client.leave();
  } else if (joining) {
    joining = false;
    setJoining(false);
    showState("idle");
  }
}

function listen(c) {
  c.addEventListener("state", ({ detail }) => showState(detail.state));
  c.addEventListener("welcome", ({ detail }) => onWelcome(detail));
  c.addEventListener("peer-joined", ({ detail }) => addPeer(detail.peer));
  c.addEventListener("peer-left", ({ detail }) => removePeer(detail.peer, detail.reason));
  c.addEventListener("peer-state", ({ detail }) => showPeerState(detail.peer));
  c.addEventListener("track", ({ detail }) => attachMedia(detail.peer));
  c.addEventListener("message", ({ detail }) => onMessage(detail));
  c.addEventListener("error", ({ detail }) => notice("warn", `Server: ${detail.message} (${detail.code})`));
  c.addEventListener("peer-error", ({ detail }) => console.warn("huddle peer", detail.peer.id, detail.error));
  c.addEventListener("reconnecting", ({ detail }) => {
    const what = c.id ? "Connection lost" : "Cannot connect";
    notice("info", `${what} (${detail.reason}); retrying in ${(detail.delay / 1000).toFixed(1)} s…`, { key: "conn", sticky: true });
  });
  c.addEventListener("closed", ({ detail }) => onClosed(detail));
}

function onWelcome(d) {
  clearNotice("conn");
  if (d.resumed) {
    notice("info", "Reconnected: the session resumed.", { key: "conn" });
  } else if (d.peers.length === 0) {
    notice("info", `You are alone in “${d.room}”. Copy the link to invite someone.`, { key: "alone", sticky: true });
  }
  ui.chatInput.disabled = ui.chatSend.disabled = false;
  if (!statsTimer) statsTimer = setInterval(updateStats, STATS_EVERY_MS);
}

function onClosed(d) {
  clearInterval(statsTimer);
  statsTimer = 0;
  for (const [id, tile] of tiles) { tile.remove(); tiles.delete(id); }
  lastStats.clear();
  renderDiag();
  if (localStream) for (const t of localStream.getTracks()) t.stop();
  localStream = null;
  client = null;
  showLocal();
  setJoining(false);
  ui.chatInput.disabled = ui.chatSend.disabled = true;
  clearNotice("conn");
  clearNotice("alone");
  if (d.error) notice("error", explain(d.error), { key: "conn", sticky: true });
  else notice("info", "You left the room.", { key: "conn" });
  showState("closed");
}

function explain(err) {
  // Most messages of huddle.js say it all; some deserve a hint for this page.
  const head = {
    "room-full": "",
    forbidden: "",
    unauthorized: "Add a join token to the URL (#token=…).",
    origin: "",
    refused: "",
    kicked: "",
    replaced: "",
  }[err.code] ?? "Cannot stay in the room.";
  return `${capitalize(err.message)}. ${head}`.trim();
}

// ---- local media ----

async function getMedia() {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    notice("warn", "Camera and microphone need a secure page (HTTPS or localhost): joining receive-only. You can still see and hear the others.", { sticky: true, key: "media" });
    return null;
  }
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  const tries = [{ audio: true, video }, { video }, { audio: true }];
  let lastErr = null;
  for (const constraints of tries) {
    try {
      const stream = await md.getUserMedia(constraints);
      if (!constraints.audio) notice("warn", "No microphone: sending video only.", { key: "media" });
      else if (!constraints.video) notice("warn", "No camera: sending sound only.", { key: "media" });
      return stream;
    } catch (err) {
      lastErr = err;
      if (err.name === "NotAllowedError" || err.name === "SecurityError") break;
    }
  }
  const why = lastErr && lastErr.name === "NotAllowedError"
    ? "camera and microphone access was denied"
    : "no camera or microphone was found";
  notice("warn", `Receive-only: ${why}. You can still see and hear the others.`, { sticky: true, key: "media" });
  return null;
}

function showLocal() {
  ui.localVideo.srcObject = localStream;
  const audio = localStream && localStream.getAudioTracks()[0];
  const video = localStream && localStream.getVideoTracks()[0];
  ui.mic.disabled = !audio;
  ui.cam.disabled = !video;
  setToggle(ui.mic, "Mic", !audio || audio.enabled);
  setToggle(ui.cam, "Camera", !video || video.enabled);
  ui.localTile.classList.toggle("novideo", !video || !video.enabled);
  if (!client) ui.localBadge.textContent = "";
  else ui.localBadge.textContent = !localStream ? "receive-only" : localBadge(audio, video);
}

// signalingURL is the server's /ws next to this page, so the demo also
// works behind a proxy that serves huddle under a path prefix.
function signalingURL() {
  const u = new URL("ws", location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  u.search = "";
  u.hash = "";
  return u.href;
}

function localBadge(audio, video) {
  const off = [];
  if (!audio || !audio.enabled) off.push("mic off");
  if (!video || !video.enabled) off.push("camera off");
  return off.join(" · ");
}

function toggle(kind, button, label) {
  const track = localStream && localStream.getTracks().find((t) => t.kind === kind);
  if (!track) return;
  track.enabled = !track.enabled;
  showLocal();
  setToggle(button, label, track.enabled);
}

function setToggle(button, label, on) {
  button.setAttribute("aria-pressed", String(on));
  button.textContent = `${label} ${on ? "on" : "off"}`;
}

// ---- remote peers ----

function addPeer(peer) {
  if (tiles.has(peer.id)) return;
  const tile = ui.tileTemplate.content.firstElementChild.cloneNode(true);
  tile.dataset.peerId = peer.id;
  tile.dataset.state = peer.connectionState;
  tile.dataset.pair = "";
  tile.querySelector(".name").textContent = label(peer);
  tile.querySelector(".state").textContent = peer.connectionState;
  ui.grid.append(tile);
  tiles.set(peer.id, tile);
  clearNotice("alone");
  attachMedia(peer);
  renderDiag();
  if (client && client.state === "joined") chatLine("system", `${label(peer)} joined`);
}

function removePeer(peer, reason) {
  const tile = tiles.get(peer.id);
  if (!tile) return;
  tile.remove();
  tiles.delete(peer.id);
  lastStats.delete(peer.id);
  renderDiag();
  if (reason !== "closed" && reason !== "reset") chatLine("system", `${label(peer)} left (${reason})`);
}

function showPeerState(peer) {
  const tile = tiles.get(peer.id);
  if (!tile) return;
  tile.dataset.state = peer.connectionState;
  tile.querySelector(".state").textContent = peer.connectionState;
  renderDiag();
}

function attachMedia(peer) {
  const tile = tiles.get(peer.id);
  if (!tile) return;
  const video = tile.querySelector("video");
  const audio = tile.querySelector("audio");
  const hasVideo = peer.stream.getVideoTracks().length > 0;
  tile.classList.toggle("novideo", !hasVideo);
  if (video.srcObject !== peer.stream) video.srcObject = peer.stream;
  if (audio.srcObject !== peer.stream) audio.srcObject = peer.stream;
  video.play().catch(() => { /* muted video always may play; a newer load interrupted */ });
  if (peer.stream.getAudioTracks().length > 0) {
    audio.play().catch((err) => {
      if (err.name === "NotAllowedError") ui.sound.hidden = false;
    });
  }
}

function enableSound() {
  for (const a of ui.grid.querySelectorAll("audio")) a.play().catch(() => {});
  ui.sound.hidden = true;
}

function label(peer) {
  return peer.name || `peer ${peer.id.slice(0, 6)}`;
}

// ---- chat ----

function sendChat() {
  const text = ui.chatInput.value.trim();
  if (!text || !client) return;
  try {
    client.send({ chat: text });
  } catch (err) {
    notice("warn", `Not sent: ${err.message}`);
    return;
  }
  chatLine("me", text, "you");
  ui.chatInput.value = "";
}

function onMessage({ from, data }) {
  if (from === "server") {
    chatLine("server", typeof data === "string" ? data : JSON.stringify(data), "server");
    return;
  }
  const peer = client && client.peers.get(from);
  const who = peer ? label(peer) : `peer ${String(from).slice(0, 6)}`;
  if (data && typeof data.chat === "string") chatLine("them", data.chat, who);
  else chatLine("them", JSON.stringify(data), who);
}

function chatLine(kind, text, who) {
  const li = document.createElement("li");
  li.className = kind;
  if (who) {
    const b = document.createElement("b");
    b.textContent = `${who}: `;
    li.append(b);
  }
  li.append(document.createTextNode(text));
  ui.chatLog.append(li);
  while (ui.chatLog.children.length > 500) ui.chatLog.firstElementChild.remove();
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
}

// ---- diagnostics ----

async function updateStats() {
  if (!client) return;
  const peers = [...client.peers.values()];
  await Promise.all(peers.map(async (peer) => {
    let s = null;
    try {
      s = await peer.stats();
    } catch {
      return;
    }
    if (!s) return;
    const prev = lastStats.get(peer.id);
    const dt = prev ? (s.timestamp - prev.timestamp) / 1000 : 0;
    s.inKbps = dt > 0 ? Math.max(0, (s.bytesReceived - prev.bytesReceived) * 8 / dt / 1000) : null;
    s.outKbps = dt > 0 ? Math.max(0, (s.bytesSent - prev.bytesSent) * 8 / dt / 1000) : null;
    lastStats.set(peer.id, s);
    const tile = tiles.get(peer.id);
    if (tile) tile.dataset.pair = s.pairType;
  }));
  renderDiag();
}

function renderDiag() {
  const rows = [];
  for (const peer of client ? client.peers.values() : []) {
    const s = lastStats.get(peer.id);
    const tr = document.createElement("tr");
    tr.dataset.peerId = peer.id;
    const path = s && s.pairType ? `${s.pairType}${s.protocol ? "/" + s.protocol : ""}` : "–";
    const cells = [
      label(peer),
      peer.connectionState,
      path,
      s && s.rtt !== null ? `${Math.round(s.rtt * 1000)} ms` : "–",
      s && s.inKbps !== null ? String(Math.round(s.inKbps)) : "–",
      s && s.outKbps !== null ? String(Math.round(s.outKbps)) : "–",
      s && s.video ? `${s.video.width}×${s.video.height}@${Math.round(s.video.fps)}` : "–",
    ];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    if (s && s.pairType) tr.cells[2].title = `local ${s.local}${s.relayProtocol ? " (" + s.relayProtocol + " to TURN)" : ""} ↔ remote ${s.remote}`;
    tr.cells[1].className = `st-${peer.connectionState}`;
    rows.push(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    tr.innerHTML = '<td colspan="7">no peers yet</td>';
    rows.push(tr);
  }
  ui.diagRows.replaceChildren(...rows);
}

// ---- page chrome ----

function setJoining(inRoom) {
  ui.room.disabled = ui.name.disabled = ui.relay.disabled = inRoom;
  ui.join.hidden = inRoom;
  ui.leave.hidden = !inRoom;
}

function showState(state) {
  const text = {
    idle: "not connected",
    media: "starting camera…",
    connecting: "connecting…",
    joined: client ? `in ${client.room}` : "joined",
    reconnecting: "reconnecting…",
    closed: "not connected",
  }[state] || state;
  ui.status.textContent = text;
  ui.status.dataset.state = state;
}

function keepInURL(room) {
  const url = new URL(location.href);
  url.searchParams.set("room", room);
  url.searchParams.delete("autojoin");
  history.replaceState(null, "", url);
}

async function share() {
  const room = ui.room.value.trim();
  if (!ROOM_RE.test(room)) return;
  const u = new URL(location.href);
  u.search = `?room=${encodeURIComponent(room)}`;
  u.hash = "";
  const link = u.href;
  try {
    await navigator.clipboard.writeText(link);
    notice("info", `Link copied: ${link}`, { key: "share" });
  } catch {
    notice("info", `Share this link: ${link}`, { key: "share", sticky: true });
  }
}

function notice(kind, text, { key = "", sticky = false } = {}) {
  if (key) clearNotice(key);
  const div = document.createElement("div");
  div.className = `notice ${kind}`;
  div.setAttribute("role", kind === "error" ? "alert" : "status");
  if (key) div.dataset.key = key;
  const span = document.createElement("span");
  span.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => div.remove());
  div.append(span, close);
  ui.notices.append(div);
  if (!sticky && kind !== "error") setTimeout(() => div.remove(), 8000);
}

function clearNotice(key) {
  for (const el of ui.notices.querySelectorAll(`[data-key="${key}"]`)) el.remove();
}

function randomRoom() {
  const words = ["amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "juniper", "kelp", "lumen"];
  const b = crypto.getRandomValues(new Uint8Array(3));
  return `${words[b[0] % words.length]}-${words[b[1] % words.length]}-${(b[2] % 90) + 10}`;
}

function capitalize(s) {
  const t = String(s).replace(/\.$/, "");
  return t.charAt(0).toUpperCase() + t.slice(1);
}
