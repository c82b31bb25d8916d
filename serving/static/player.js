// The Streamlake player page: lists the catalog, plays a title's signed HLS master with hls.js
// (native HLS where MediaSource is missing, as on iPhones), shows its WebVTT subtitles, trickplay
// previews over the seek bar, and the viewer's recommendations; it reports playback QoE beacons to
// POST /events (README, Quality of experience). Plain ES, no build step.
"use strict";

const TOKEN_KEY = "streamlake.token";
const $ = (id) => document.getElementById(id);
const video = $("video");
const seek = $("seek");
const preview = $("preview");
let hls = null;
let trickplay = []; // {start, end, url, x, y, w, h} per tile of the sprite sheets

const token = () => sessionStorage.getItem(TOKEN_KEY);
const report = (error) => {
  $("status").textContent = String(error?.message ?? error);
};

/** The token's claims, read for display and the user id only: the API is what verifies it. */
function claims(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
  } catch {
    return null;
  }
}

// QoE beacons of the current playback session, sent in batches: at most one POST every
// BEACON_FLUSH_MS (the free tier allows 10 requests a minute) and one when the session ends.
const BEACON_FLUSH_MS = 10_000;
let session = null; // {id, mediaId, user, started, firstFrame, stalledAt, seq, queue, timer}

/** Seconds of content played in this session (the union of the ranges the video played). */
function playedSeconds() {
  let total = 0;
  for (let i = 0; i < video.played.length; i += 1) total += video.played.end(i) - video.played.start(i);
  return Math.round(total * 1000) / 1000;
}

/** The player's size in device pixels, when it has one (for the upscaling factor). */
function playerSize() {
  const width = Math.round(video.clientWidth * devicePixelRatio);
  const height = Math.round(video.clientHeight * devicePixelRatio);
  return width > 0 && height > 0 ? { player_width: width, player_height: height } : {};
}

function beacon(type, fields = {}) {
  if (!session) return;
  session.queue.push({
    event_id: `${session.id}:${session.seq++}`,
    user_id: session.user,
    media_id: session.mediaId,
    session_id: session.id,
    event_type: type,
    ts: new Date().toISOString(),
    device: "web",
    played_s: playedSeconds(),
    ...playerSize(),
    ...fields,
  });
  session.timer ??= setTimeout(() => flushBeacons(session), BEACON_FLUSH_MS);
}

/** Sends what a session has queued; keepalive lets the last batch outlive the page. Resent on
 * failure: event_ids make a resend count once. */
async function flushBeacons(target, keepalive = false) {
  if (!target) return;
  clearTimeout(target.timer);
  target.timer = null;
  const events = target.queue.splice(0);
  if (!events.length) return;
  const response = await fetch("/events", {
    method: "POST",
    keepalive,
    headers: { Authorization: `Bearer ${token()}`, "Content-Type": "application/json" },
    body: JSON.stringify({ events }),
  }).catch(() => null);
  if (!response?.ok && !keepalive) target.queue.unshift(...events);
}

/** Ends the session: exit_before_start before the first frame, view_end after it. */
function endSession() {
  if (!session) return;
  if (session.firstFrame) beacon("view_end");
  else beacon("exit_before_start", { duration_ms: Math.round(performance.now() - session.started) });
  flushBeacons(session, true);
  session = null;
}

function startSession(mediaId) {
  endSession();
  const user = claims(token())?.sub;
  if (!user) return;
  const id = crypto.randomUUID?.() ?? `${Date.now()}-${Math.random().toString(16).slice(2)}`;
  const started = performance.now();
  session = { id, mediaId, user, started, firstFrame: false, stalledAt: null, seq: 0, queue: [], timer: null };
  beacon("load_start");
}

video.addEventListener("playing", () => {
  if (!session) return;
  if (!session.firstFrame) {
    session.firstFrame = true;
    beacon("first_frame", { duration_ms: Math.round(performance.now() - session.started) });
  } else if (session.stalledAt !== null) {
    beacon("rebuffer_end", { duration_ms: Math.round(performance.now() - session.stalledAt) });
    session.stalledAt = null;
  }
});
video.addEventListener("waiting", () => {
  if (!session?.firstFrame || session.stalledAt !== null) return;
  session.stalledAt = performance.now();
  beacon("rebuffer_start");
});
addEventListener("pagehide", endSession);

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(`${path}: ${response.status} ${JSON.stringify(body.detail ?? "")}`);
  }
  return response.json();
}

/** A list entry that plays its item when chosen (a button, so keyboards and readers reach it). */
function listEntry(item) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = item.title ?? item.media_id;
  button.addEventListener("click", () => play(item.media_id).catch(report));
  const li = document.createElement("li");
  li.append(button);
  return li;
}

async function loadCatalog() {
  const page = await api("/media?limit=100");
  $("catalog").replaceChildren(...page.items.map(listEntry));
}

async function loadRecommendations(user) {
  const recs = await api(`/recommendations/${encodeURIComponent(user)}?k=10`);
  $("recommendations").replaceChildren(...recs.items.map(listEntry));
}

const seconds = (stamp) => stamp.split(":").reduce((total, part) => total * 60 + Number(part), 0);

/** The trickplay map: WebVTT cues whose text is `sprite_000.jpg#xywh=x,y,w,h`, beside the map. */
async function loadTrickplay(url) {
  const response = await fetch(url);
  if (!response.ok) return [];
  const base = new URL(url, location.href);
  const cue = /([\d:.]+)\s+-->\s+([\d:.]+)[^\n]*\n(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)/;
  return (await response.text())
    .split(/\r?\n\r?\n/)
    .map((block) => block.match(cue))
    .filter(Boolean)
    .map(([, start, end, file, x, y, w, h]) => ({
      start: seconds(start),
      end: seconds(end),
      url: new URL(file, base).href,
      x: +x,
      y: +y,
      w: +w,
      h: +h,
    }));
}

function addSubtitles(tracks) {
  video.querySelectorAll("track").forEach((track) => track.remove());
  tracks.forEach((sub, i) => {
    const track = document.createElement("track");
    Object.assign(track, { kind: "subtitles", srclang: sub.lang, label: sub.lang, src: sub.url });
    track.default = i === 0;
    video.append(track);
    track.track.mode = i === 0 ? "showing" : "hidden";
  });
}

async function play(mediaId) {
  $("status").textContent = "";
  const mse = Boolean(window.Hls?.isSupported());
  startSession(mediaId);
  const meta = await api(`/media/${mediaId}/playback?device=${mse ? "web" : "apple"}`);
  $("now-playing").textContent = meta.title ?? meta.media_id;
  hls?.destroy();
  hls = null;
  video.poster = meta.poster_url ?? "";
  addSubtitles(meta.subtitles);
  trickplay = meta.trickplay ? await loadTrickplay(meta.trickplay.url) : [];
  if (mse) {
    // Subtitles come from the <track> above, so hls.js renders neither the master's group nor captions.
    // The master asked for device=web lists only what MediaSource decodes (no HEVC in Chromium).
    hls = new Hls({ enableWebVTT: false, enableCEA708Captions: false });
    hls.on(Hls.Events.ERROR, (_, data) => {
      beacon(data.fatal ? "fatal_error" : "error", { error_code: data.details });
      if (data.fatal) report(`playback failed: ${data.details}`);
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
      const level = hls.levels[data.level];
      beacon("rendition_switch", { bitrate: level.bitrate, width: level.width, height: level.height });
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(report));
    hls.loadSource(meta.master_url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = meta.master_url;
    await video.play();
  } else {
    throw new Error(window.Hls ? "this browser plays no HLS" : "hls.js did not load: run `make install`");
  }
}

function showPreview(event) {
  const box = seek.getBoundingClientRect();
  const time = Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1) * Number(seek.max);
  const tile = trickplay.find((cue) => time >= cue.start && time < cue.end);
  preview.hidden = !tile;
  if (!tile) return;
  Object.assign(preview.style, {
    width: `${tile.w}px`,
    height: `${tile.h}px`,
    background: `url("${tile.url}") -${tile.x}px -${tile.y}px`,
    left: `${Math.min(Math.max(event.clientX - box.left - tile.w / 2, 0), box.width - tile.w)}px`,
  });
}

video.addEventListener("durationchange", () => {
  seek.max = Number.isFinite(video.duration) ? video.duration : 0;
});
video.addEventListener("timeupdate", () => {
  seek.value = video.currentTime;
});
seek.addEventListener("input", () => {
  video.currentTime = Number(seek.value);
});
seek.addEventListener("pointermove", showPreview);
seek.addEventListener("pointerleave", () => {
  preview.hidden = true;
});

function signIn(jwt) {
  sessionStorage.setItem(TOKEN_KEY, jwt);
  const user = claims(jwt)?.sub;
  $("whoami").textContent = user ? `Signed in as ${user}` : "";
  loadCatalog().catch(report);
  if (user) loadRecommendations(user).catch(report);
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value.trim());
});

// A ?token= link signs in once; the token then lives in this tab's sessionStorage, not the URL bar.
const params = new URLSearchParams(location.search);
if (params.has("token")) {
  sessionStorage.setItem(TOKEN_KEY, params.get("token"));
  params.delete("token");
  history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
}
if (token()) signIn(token());
