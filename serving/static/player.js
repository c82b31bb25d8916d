// The Streamlake player page: lists the catalog, plays a title's signed HLS master with hls.js
// (native HLS where MediaSource is missing, as on iPhones), shows its WebVTT subtitles, trickplay
// previews over the seek bar, and the viewer's recommendations. Plain ES, no build step.
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
  const meta = await api(`/media/${mediaId}/playback?device=${mse ? "web" : "apple"}`);
  $("now-playing").textContent = meta.title ?? meta.media_id;
  hls?.destroy();
  hls = null;
  video.poster = meta.poster_url ?? "";
  addSubtitles(meta.subtitles);
  trickplay = meta.trickplay ? await loadTrickplay(meta.trickplay.url) : [];
  if (mse) {
    // Subtitles come from the <track> above, so hls.js renders neither the master's group nor captions.
    // The master's CODECS let it skip variants this browser cannot decode (HEVC in Chromium).
    hls = new Hls({ enableWebVTT: false, enableCEA708Captions: false });
    hls.on(Hls.Events.ERROR, (_, data) => data.fatal && report(`playback failed: ${data.details}`));
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
