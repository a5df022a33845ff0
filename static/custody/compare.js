// Clip and reference of an audio.context result, played in step. The
// alignment (JSON in #alignment) maps clip spans to reference spans; the
// recording the user last played or moved leads, the other follows to the
// mapped time, and pauses where the leader has no counterpart (material the
// reference lacks, or the reference's removed parts).
import { enhance, formatSeconds, readJSON } from "./player.js";

const TOLERANCE = 0.25; // seconds of drift before the follower is moved again

function mapper(segments, from, to) {
  return (t) => {
    for (const s of segments) {
      const [a0, a1] = s[from];
      const [b0, b1] = s[to];
      if (t >= a0 && t <= a1) return b0 + ((t - a0) * (b1 - b0)) / (a1 - a0);
    }
    return null;
  };
}

const root = document.getElementById("compare");
if (root) {
  const { segments } = readJSON("alignment");
  const clip = enhance(
    root.querySelector("#clip-player"),
    segments.map((s) => ({
      start: s.clip[0],
      end: s.clip[1],
      class: "measurement",
      label: `reference ${formatSeconds(s.reference[0])}–${formatSeconds(s.reference[1])}`,
    })),
  ).audio;
  const reference = enhance(
    root.querySelector("#reference-player"),
    segments.map((s) => ({
      start: s.reference[0],
      end: s.reference[1],
      class: "measurement",
      label: `clip ${formatSeconds(s.clip[0])}–${formatSeconds(s.clip[1])}`,
    })),
  ).audio;
  const status = root.querySelector("#compare-status");
  const maps = new Map([
    [clip, { other: reference, map: mapper(segments, "clip", "reference") }],
    [reference, { other: clip, map: mapper(segments, "reference", "clip") }],
  ]);
  // Events this script caused on the follower, so they are not taken for the user's.
  // A seek is ours when it ends where this script sent it: a seek that
  // another interrupts fires no "seeked" of its own, so a count would take
  // the user's next seek for ours.
  const ours = new Map([
    [clip, { seekedAt: null, play: 0, pause: 0 }],
    [reference, { seekedAt: null, play: 0, pause: 0 }],
  ]);
  let leader = clip;

  function mine(element, kind) {
    const pending = ours.get(element);
    if (pending[kind] > 0) {
      pending[kind] -= 1;
      return true;
    }
    return false;
  }

  function follow() {
    const { other, map } = maps.get(leader);
    const target = map(leader.currentTime);
    if (target === null) {
      status.textContent = `${leader === clip ? "clip" : "reference"} at ${formatSeconds(leader.currentTime)}: no counterpart`;
      if (!other.paused) {
        ours.get(other).pause += 1;
        other.pause();
      }
      return;
    }
    status.textContent = `clip ${formatSeconds(leader === clip ? leader.currentTime : target)} = reference ${formatSeconds(
      leader === clip ? target : leader.currentTime,
    )}`;
    if (Math.abs(other.currentTime - target) > TOLERANCE) {
      other.currentTime = target;
      ours.get(other).seekedAt = other.currentTime;
    }
    if (!leader.paused && other.paused) {
      ours.get(other).play += 1;
      other.play().catch(() => {
        ours.get(other).play -= 1;
      });
    }
  }

  for (const element of [clip, reference]) {
    element.addEventListener("play", () => {
      if (mine(element, "play")) return;
      leader = element;
      follow();
    });
    element.addEventListener("pause", () => {
      // The user paused either one: both stop (whichever was leading).
      if (mine(element, "pause")) return;
      const { other } = maps.get(element);
      if (!other.paused) {
        ours.get(other).pause += 1;
        other.pause();
      }
    });
    element.addEventListener("seeked", () => {
      const pending = ours.get(element);
      const sent = pending.seekedAt;
      pending.seekedAt = null;
      // Within the drift allowed: a playing follower has moved on a little by now.
      if (sent !== null && Math.abs(element.currentTime - sent) <= TOLERANCE) return;
      leader = element;
      follow();
    });
    element.addEventListener("timeupdate", () => {
      if (element === leader && !element.paused) follow();
    });
  }
  // The alignment table's links: play that recording from there (the other follows).
  document.addEventListener("click", (event) => {
    const link = event.target.closest("[data-seek-clip], [data-seek-reference]");
    if (!link) return;
    event.preventDefault();
    const [element, seconds] =
      "seekClip" in link.dataset ? [clip, link.dataset.seekClip] : [reference, link.dataset.seekReference];
    element.currentTime = Number(seconds);
    element.play().catch(() => {});
  });
  root.dataset.ready = "1";
}
