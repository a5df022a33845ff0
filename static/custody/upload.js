// Evidence upload form: large files go as a resumable upload (tus 1.0, the
// server's /api/v1/uploads/) so that a dropped connection resumes where it
// stopped instead of starting again. Smaller files, or a browser without
// fetch, use the plain multipart form. The server hashes the bytes as they
// arrive either way; nothing here is trusted for the hashes.
(function () {
  "use strict";

  const form = document.getElementById("upload-form");
  if (!form || !window.fetch || !window.File) return;
  const endpoint = form.dataset.resumableUrl;
  const status = document.getElementById("upload-status");
  const bar = document.getElementById("upload-progress");
  const MAX_RETRIES = 8;

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function b64(text) {
    let binary = "";
    for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
    return btoa(binary);
  }

  // A header line must stay under the web server's limit (gunicorn: 8190 bytes).
  const MAX_METADATA = 7000;

  function metadataFor(file) {
    const fields = {
      case: form.dataset.case,
      filename: file.name,
      description: form.elements.description.value,
      source: form.elements.source.value,
      sha256: form.elements.sha256.value.trim(),
    };
    return Object.entries(fields)
      .filter(([, value]) => value)
      .map(([key, value]) => key + " " + b64(value))
      .join(",");
  }

  function csrf() {
    return form.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  function headers(extra) {
    return Object.assign({ "Tus-Resumable": "1.0.0", "X-CSRFToken": csrf() }, extra);
  }

  async function detail(response) {
    try {
      return (await response.json()).detail || response.statusText;
    } catch (e) {
      return response.statusText || "HTTP " + response.status;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // HTTP errors that retrying cannot fix: stop and say why.
  class Refused extends Error {}

  async function create(file, metadata) {
    const response = await fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: headers({ "Upload-Length": String(file.size), "Upload-Metadata": metadata }),
    });
    if (response.status !== 201) throw new Refused(await detail(response));
    return response;
  }

  async function offsetOf(url) {
    const response = await fetch(url, { method: "HEAD", credentials: "same-origin", headers: headers({}) });
    if (!response.ok) throw new Refused("the upload can no longer be resumed (HTTP " + response.status + ")");
    return Number(response.headers.get("Upload-Offset"));
  }

  async function send(url, file, offset) {
    const chunkSize = Number(form.dataset.chunkSize || 8 * 1024 * 1024);
    let retries = 0;
    while (offset < file.size) {
      const end = Math.min(offset + chunkSize, file.size);
      let response;
      try {
        response = await fetch(url, {
          method: "PATCH",
          credentials: "same-origin",
          headers: headers({ "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" }),
          body: file.slice(offset, end),
        });
      } catch (networkError) {
        response = null;
      }
      if (response && response.status === 204) {
        offset = Number(response.headers.get("Upload-Offset"));
        retries = 0;
        bar.value = offset;
        say("Sent " + offset.toLocaleString() + " of " + file.size.toLocaleString() + " bytes");
        if (offset === file.size) return response.headers.get("Custody-Evidence");
        continue;
      }
      if (response && response.status >= 400 && response.status < 500 && ![409, 423].includes(response.status)) {
        throw new Refused(await detail(response));
      }
      // The connection broke, or the server was busy: ask where it stands, then go on.
      retries += 1;
      if (retries > MAX_RETRIES) throw new Refused("the connection keeps failing; try again later");
      say("Connection interrupted; resuming (attempt " + retries + " of " + MAX_RETRIES + ")…");
      await sleep(Math.min(30000, 500 * 2 ** retries));
      try {
        offset = await offsetOf(url);
      } catch (e) {
        if (e instanceof Refused) throw e;
      }
    }
    return null;
  }

  // The plain form: the browser sends it and the server answers with the
  // evidence page, or this page again with the reason it was refused (the
  // form's error list). Until then, say that it is on its way; the bar is
  // indeterminate (no value): the browser gives no upload progress for a
  // plain form submission.
  function plain(file) {
    if (!file) return;
    bar.removeAttribute("value");
    bar.hidden = false;
    say("Sending " + file.size.toLocaleString() + " bytes; the server hashes them as they arrive…");
    // Back to this page from the browser's history: not sending any more.
    window.addEventListener("pageshow", () => {
      bar.hidden = true;
      say("");
    });
  }

  form.addEventListener("submit", async (event) => {
    const file = form.elements.file.files[0];
    const threshold = Number(form.dataset.resumableFrom || Infinity);
    if (!file || file.size < threshold) return plain(file); // the plain form
    const metadata = metadataFor(file);
    if (metadata.length > MAX_METADATA) return plain(file); // a very long description: the plain form carries it
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    bar.max = file.size;
    bar.value = 0;
    bar.hidden = false;
    let url = null;
    try {
      say("Starting a resumable upload of " + file.size.toLocaleString() + " bytes…");
      const created = await create(file, metadata);
      url = created.headers.get("Location");
      const evidence = created.headers.get("Custody-Evidence") || (await send(url, file, 0));
      if (!evidence) throw new Refused("the server did not confirm the evidence");
      say("Received; opening the evidence record…");
      window.location.assign(evidence.replace("/api/v1/evidence/", "/evidence/"));
    } catch (e) {
      say("Not received: " + (e.message || e) + ". Nothing was recorded as evidence.", true);
      button.disabled = false;
      if (url) {
        // Give the partial upload up rather than leave it to expire.
        fetch(url, { method: "DELETE", credentials: "same-origin", headers: headers({}) }).catch(() => {});
      }
    }
  });
})();
