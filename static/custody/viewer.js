// The evidence page's image viewer, enhanced: without this script the page
// shows the photo and links to the analyses' pictures. With it: zoom (buttons,
// the mouse wheel over the picture, fit and 100 %), the analyses' pictures
// laid over the photo (checkboxes, one opacity slider) and their regions
// drawn as boxes. No inline style: positions are set through the CSSOM.
const MIN_SCALE = 0.02;
const MAX_SCALE = 16;
const STEP = 1.25;

function readJSON(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}

function setup(viewer) {
  const frame = viewer.querySelector("#viewer-frame");
  const stage = viewer.querySelector("#viewer-stage");
  const photo = viewer.querySelector("#photo");
  const readout = viewer.querySelector("#viewer-zoom");
  const layers = readJSON("image-layers") || { overlays: [], boxes: [] };
  let scale = 1;

  const width = () => photo.naturalWidth;
  const height = () => photo.naturalHeight;

  function fitScale() {
    const room = frame.clientWidth;
    const tall = Math.max(200, window.innerHeight * 0.75);
    return Math.min(1, room / width(), tall / height());
  }

  // Zoom to `next`, keeping the image point under (x, y) (frame pixels) in place.
  function zoom(next, x = frame.clientWidth / 2, y = frame.clientHeight / 2) {
    next = Math.min(MAX_SCALE, Math.max(MIN_SCALE, next));
    const imageX = (frame.scrollLeft + x) / scale;
    const imageY = (frame.scrollTop + y) / scale;
    scale = next;
    stage.style.width = `${width() * scale}px`;
    stage.style.height = `${height() * scale}px`;
    frame.scrollLeft = imageX * scale - x;
    frame.scrollTop = imageY * scale - y;
    readout.textContent = `${Math.round(scale * 100)} % of ${width()} × ${height()} px`;
    viewer.dataset.scale = String(scale);
  }

  viewer.querySelector("#viewer-tools").addEventListener("click", (event) => {
    const button = event.target.closest("[data-zoom]");
    if (!button) return;
    const how = button.dataset.zoom;
    if (how === "in") zoom(scale * STEP);
    else if (how === "out") zoom(scale / STEP);
    else if (how === "fit") zoom(fitScale());
    else zoom(Number(how));
  });
  frame.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const rect = frame.getBoundingClientRect();
      zoom(scale * (event.deltaY < 0 ? STEP : 1 / STEP), event.clientX - rect.left, event.clientY - rect.top);
    },
    { passive: false },
  );

  // Overlays: one <img> each over the photo, shown while its box is ticked.
  const opacity = viewer.parentElement.querySelector("#overlay-opacity");
  const pictures = new Map();
  for (const overlay of layers.overlays) {
    const picture = document.createElement("img");
    picture.src = overlay.url;
    picture.alt = overlay.label;
    picture.className = "viewer-overlay";
    picture.dataset.overlay = overlay.id;
    picture.hidden = true;
    stage.append(picture);
    pictures.set(overlay.id, picture);
  }
  const applyOpacity = () => {
    for (const picture of pictures.values()) picture.style.opacity = String(Number(opacity.value) / 100);
  };
  for (const box of viewer.parentElement.querySelectorAll("input[data-overlay]")) {
    const picture = pictures.get(box.dataset.overlay);
    if (!picture) continue;
    box.disabled = false;
    box.addEventListener("change", () => {
      picture.hidden = !box.checked;
    });
  }
  if (opacity && pictures.size) {
    opacity.closest("label").hidden = false;
    opacity.addEventListener("input", applyOpacity);
    applyOpacity();
  }

  // Boxes: placed in percent of the photo, so they follow every zoom.
  const drawn = layers.boxes.map((b) => {
    const box = document.createElement("div");
    box.className = "viewer-box";
    box.style.left = `${(100 * b.x) / width()}%`;
    box.style.top = `${(100 * b.y) / height()}%`;
    box.style.width = `${(100 * b.w) / width()}%`;
    box.style.height = `${(100 * b.h) / height()}%`;
    const label = document.createElement("span");
    label.textContent = b.label;
    box.append(label);
    stage.append(box);
    return box;
  });
  for (const check of viewer.parentElement.querySelectorAll("input[data-box]")) {
    const box = drawn[Number(check.dataset.box)];
    if (!box) continue;
    check.disabled = false;
    check.addEventListener("change", () => {
      box.hidden = !check.checked;
    });
  }

  viewer.querySelector("#viewer-tools").hidden = false;
  viewer.classList.add("enhanced");
  zoom(fitScale());
  viewer.dataset.ready = "1";
}

const viewer = document.getElementById("viewer");
if (viewer) {
  const photo = viewer.querySelector("#photo");
  if (photo.complete && photo.naturalWidth) setup(viewer);
  else photo.addEventListener("load", () => setup(viewer), { once: true });
}
