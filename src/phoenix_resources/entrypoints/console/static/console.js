// The console's only script (served by the console itself; the pages work without it).
// 1. A result rendered into a live region at load is not announced by screen readers:
//    say it again once the page is ready.
// 2. The pipeline page refreshes its figures every 5 s while its checkbox is ticked, the
//    tab is visible and the focus is not inside what would be replaced.
"use strict";

function reannounce(id) {
  const region = document.getElementById(id);
  if (!region || !region.textContent.trim()) return;
  const said = region.textContent;
  region.textContent = "";
  window.setTimeout(() => { region.textContent = said; }, 150);
}

async function refreshGlance(toggle) {
  const glance = document.getElementById("glance");
  const updated = document.getElementById("updated");
  if (!glance || !toggle.checked || document.visibilityState !== "visible") return;
  if (glance.contains(document.activeElement)) return;
  try {
    const answer = await fetch(window.location.pathname, {credentials: "same-origin"});
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const fresh = page.getElementById("glance");
    if (!answer.ok || !fresh) {
      updated.textContent = "Not updated: sign in again (reload the page)";
      return;
    }
    glance.replaceWith(document.importNode(fresh, true));
    updated.textContent = page.getElementById("updated").textContent;
  } catch (error) {
    updated.textContent = "Not updated: the console did not answer";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  reannounce("status");
  reannounce("alert");
  const toggle = document.getElementById("auto-refresh");
  if (toggle) window.setInterval(() => refreshGlance(toggle), 5000);
});
