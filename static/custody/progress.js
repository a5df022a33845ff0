// Live status of analyses on the evidence, case and analysis pages.
//
// An element with data-status-url lists analyses (each in an element with
// data-analysis="<id>", its status in a [data-field=status] inside). While
// any of them is queued or running, this asks the server every 2 seconds
// where they stand (the page's status.json) and updates the cells, a progress
// bar and the reasons of failures, without reloading the page; it stops when
// nothing is pending. With data-reload-when-done the page is reloaded once
// they are done (the analysis page, to show its findings). Without
// JavaScript the pages still show the state as of their last load.
(function () {
  "use strict";

  const PENDING = ["queued", "running"];
  const INTERVAL_MS = 2000;
  const MAX_ERRORS = 10;

  function text(a) {
    if (a.status === "running" && a.elapsed_s !== null) return "running (" + Math.round(a.elapsed_s) + " s)";
    if (a.status === "failed") return "failed: " + (a.error || "no reason recorded");
    if (a.status === "queued" && a.attempts > 0) return "queued (attempt " + (a.attempts + 1) + ")";
    return a.status;
  }

  function watch(root) {
    const url = root.dataset.statusUrl;
    const region = document.getElementById(root.dataset.progress || "");
    const bar = region && region.querySelector("progress");
    const summary = region && region.querySelector(".progress-text");
    const failures = region && region.querySelector(".progress-failures");
    const cells = () => root.querySelectorAll("[data-analysis] [data-field=status], [data-analysis][data-field=status]");

    // Only analyses pending when the page was drawn are watched for failures.
    const watched = new Set();
    cells().forEach((cell) => {
      if (PENDING.includes(cell.dataset.status)) watched.add(cell.closest("[data-analysis]").dataset.analysis);
    });
    if (watched.size === 0) return;

    let errors = 0;

    function say(message, isError) {
      if (!region) return;
      region.hidden = false;
      summary.textContent = message;
      summary.className = "progress-text" + (isError ? " error" : "");
    }

    function update(body) {
      const byId = new Map(body.analyses.map((a) => [a.id, a]));
      cells().forEach((cell) => {
        const a = byId.get(cell.closest("[data-analysis]").dataset.analysis);
        if (!a) return;
        cell.dataset.status = a.status;
        cell.textContent = text(a);
        cell.classList.toggle("error", a.status === "failed");
      });
      const mine = body.analyses.filter((a) => watched.has(a.id));
      const finished = mine.filter((a) => !PENDING.includes(a.status));
      const running = mine.filter((a) => a.status === "running").length;
      const failed = mine.filter((a) => a.status === "failed");
      if (bar) {
        bar.max = Math.max(1, mine.length);
        bar.value = finished.length;
      }
      let message = finished.length + " of " + mine.length + " finished";
      if (running) message += ", " + running + " running";
      if (mine.length - finished.length - running > 0) message += ", " + (mine.length - finished.length - running) + " queued";
      if (failed.length) message += "; " + failed.length + " failed";
      say(message + ".", failed.length > 0);
      if (failures) {
        failures.replaceChildren(
          ...failed.map((a) => {
            const li = document.createElement("li");
            li.textContent = a.analyzer + " failed: " + (a.error || "no reason recorded");
            return li;
          }),
        );
        failures.hidden = failed.length === 0;
      }
      return mine.some((a) => PENDING.includes(a.status));
    }

    async function poll() {
      let body;
      try {
        const response = await fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error("HTTP " + response.status);
        body = await response.json();
      } catch (e) {
        errors += 1;
        if (errors > MAX_ERRORS) {
          say("Stopped updating: the server did not answer (" + (e.message || e) + "). Reload the page to see the state.", true);
          return;
        }
        say("Could not ask the server for the status (" + (e.message || e) + "); trying again…", true);
        setTimeout(poll, INTERVAL_MS * Math.min(errors + 1, 5));
        return;
      }
      errors = 0;
      if (update(body)) {
        setTimeout(poll, INTERVAL_MS);
      } else if (root.dataset.reloadWhenDone) {
        window.location.reload();
      }
    }

    poll();
  }

  function start() {
    if (!window.fetch) return;
    document.querySelectorAll("[data-status-url]").forEach(watch);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
