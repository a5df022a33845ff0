// The chain-of-custody report: its "Print / save as PDF" link (no inline
// handler, so the page works under the Content-Security-Policy).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("print-report").addEventListener("click", (event) => {
    event.preventDefault();
    window.print();
  });
});
