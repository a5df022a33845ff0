// The evidence page's audio player, enhanced: the page works without this
// script (a plain <audio controls> and links that open the recording at a
// time). With it, wavesurfer.js (vendored, static/vendor/) draws the
// waveform, a spectrogram and a time axis under the same <audio> element,
// with one region per time span the analyses named; clicking a region, or
// any element with data-seek="<seconds>" on the page, plays from there.
//
// CSP: no inline script or style. wavesurfer writes one fixed stylesheet into
// its shadow root, which the pages with a player allow by its hash
// (custody/urls.py; the hash covers the height below: change both together);
// everything else is styled from static/custody/viewer.css or through the CSSOM.
import WaveSurfer from "../vendor/wavesurfer/wavesurfer.esm.js";
import RegionsPlugin from "../vendor/wavesurfer/plugins/regions.esm.js";
import SpectrogramPlugin from "../vendor/wavesurfer/plugins/spectrogram.esm.js";
import TimelinePlugin from "../vendor/wavesurfer/plugins/timeline.esm.js";

// Region fill by finding class: indicators stand out, measurements less.
const COLOURS = {
  indicator: "rgba(200, 40, 40, 0.28)",
  measurement: "rgba(40, 100, 200, 0.22)",
  fact: "rgba(90, 90, 90, 0.18)",
  visual: "rgba(120, 60, 160, 0.2)",
};

export function readJSON(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}

function say(status, text) {
  if (!status) return;
  status.textContent = text;
  status.hidden = false;
}

export function formatSeconds(s) {
  return `${Number(s).toFixed(2)} s`;
}

// Enhance one player box (.player holding an <audio> and a .player-waveform).
// Returns {audio, wavesurfer, regions}; wavesurfer is null when the box asks
// for no waveform (a file too large to decode in the page).
export function enhance(box, markers = []) {
  const audio = box.querySelector("audio");
  const target = box.querySelector(".player-waveform");
  const status = box.querySelector(".player-status");
  audio.addEventListener("error", () =>
    say(status, "This browser cannot play this recording: download the file instead."),
  );
  if (!box.dataset.waveform || !target) return { audio, wavesurfer: null, regions: null };

  const regions = RegionsPlugin.create();
  const wavesurfer = WaveSurfer.create({
    container: target,
    media: audio,
    url: audio.currentSrc || audio.src,
    height: 96, // part of the shadow-root stylesheet custody/urls.py allows by hash
    normalize: true,
    waveColor: "#6b7b8c",
    progressColor: "#1f3b57",
    cursorColor: "#b22222",
    cursorWidth: 2,
    dragToSeek: true,
    plugins: [regions, SpectrogramPlugin.create({ labels: true, height: 160, useWebWorker: false })],
  });
  let timeline = null;
  wavesurfer.on("decode", (duration) => {
    // The time axis, labelled about ten times whatever the length.
    const step = tick(duration / 10);
    timeline?.destroy();
    timeline = wavesurfer.registerPlugin(
      TimelinePlugin.create({
        height: 20,
        timeInterval: step / 2, // seconds between ticks
        primaryLabelInterval: step, // seconds between labels
        secondaryLabelInterval: 0,
        formatTimeCallback: (s) => (step < 1 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`),
      }),
    );
    regions.clearRegions();
    markers.forEach((marker, i) => {
      // A span over (nearly) the whole recording (a coverage measure) is only
      // tinted faintly, so it does not hide the waveform or the others.
      const whole = marker.end - marker.start >= 0.95 * duration;
      const region = regions.addRegion({
        id: `marker-${i}`,
        start: marker.start,
        end: marker.end,
        content: marker.label,
        color: whole ? "rgba(90, 90, 90, 0.06)" : COLOURS[marker.class] || "rgba(90, 90, 90, 0.2)",
        drag: false,
        resize: false,
      });
      region.element.title = `${marker.label}: ${formatSeconds(marker.start)}–${formatSeconds(marker.end)}${
        marker.note ? `\n${marker.note}` : ""
      }`;
      region.element.dataset.start = String(marker.start);
    });
    box.dataset.ready = "1";
  });
  regions.on("region-clicked", (region, event) => {
    event.stopPropagation(); // not also a seek to where the click fell
    wavesurfer.setTime(region.start);
    wavesurfer.play().catch(() => {});
  });
  wavesurfer.on("error", (error) =>
    say(status, `The waveform could not be drawn (${error.message || error}); the player still plays.`),
  );
  return { audio, wavesurfer, regions };
}

// A round step (1, 2 or 5 times a power of ten) of at least `seconds`.
function tick(seconds) {
  const power = 10 ** Math.floor(Math.log10(Math.max(seconds, 0.01)));
  return [1, 2, 5, 10].map((k) => k * power).find((step) => step >= seconds);
}

export function seekAndPlay(audio, seconds) {
  audio.currentTime = seconds;
  return audio.play().catch(() => {});
}

// Any element with data-seek="<seconds>" plays the page's player from there.
function followSeekLinks(box, audio) {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("[data-seek]");
    if (!link) return;
    const seconds = Number(link.dataset.seek);
    if (!Number.isFinite(seconds) || seconds < 0) return;
    event.preventDefault();
    seekAndPlay(audio, seconds);
    box.scrollIntoView({ block: "nearest" });
  });
}

const box = document.getElementById("player");
if (box) {
  const { audio } = enhance(box, readJSON("markers") || []);
  followSeekLinks(box, audio);
}
