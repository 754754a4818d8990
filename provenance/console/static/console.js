// Progressive enhancement only: every page and form works without this file.
"use strict";

// Clicking a flagged segment seeks the player to it.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.seek");
  const player = document.getElementById("player");
  if (!button || !player) return;
  player.currentTime = Number(button.dataset.seek);
  player.play().catch(() => {});
  player.focus();
});

// Uploads show their progress, then the page the server answers with.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.classList.contains("upload") || !window.XMLHttpRequest) return;
  event.preventDefault();
  const bar = form.querySelector("progress");
  const request = new XMLHttpRequest();
  request.open("POST", form.action);
  request.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable && bar) { bar.hidden = false; bar.value = Math.round((100 * e.loaded) / e.total); }
  });
  request.addEventListener("load", () => {
    if (request.responseURL && request.responseURL !== form.action) { window.location.assign(request.responseURL); return; }
    const type = request.getResponseHeader("Content-Type") || "";
    if (type.startsWith("text/html")) { document.open(); document.write(request.responseText); document.close(); return; }
    const answer = document.createElement("pre");  // a problem document: shown as text, never parsed as a page
    answer.className = "error";
    answer.textContent = request.responseText;
    form.replaceWith(answer);
  });
  request.send(new FormData(form));
});
