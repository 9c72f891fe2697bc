// Keeps the dashboard live: the broker sends each section's HTML (rendered and escaped
// on the server) whenever the estate changes. Without this script the page still works;
// it just does not update by itself.
"use strict";
// The pool form shows the fields of the chosen desktop kind only.
(() => {
  const select = document.querySelector("[data-kind-select]");
  if (!select) return;
  const sync = () => {
    for (const set of document.querySelectorAll("fieldset[data-kind]")) {
      set.hidden = set.dataset.kind !== select.value;
    }
  };
  select.addEventListener("change", sync);
  sync();
})();
(() => {
  const status = document.getElementById("live");
  const show = (text, state) => {
    if (status) {
      status.textContent = text;
      status.dataset.state = state;
    }
  };
  if (!document.getElementById("hosts")) {
    if (status) status.hidden = true;
    return;
  }
  const events = new EventSource("/admin/events");
  events.addEventListener("sections", (event) => {
    const sections = JSON.parse(event.data);
    for (const [id, html] of Object.entries(sections)) {
      const element = document.getElementById(id);
      // Leave a section alone while the user is in one of its forms.
      if (element && !element.contains(document.activeElement)) {
        element.innerHTML = html;
      }
    }
    document.body.dataset.updated = String(Date.now());
    show("live", "on");
  });
  events.addEventListener("error", () => show("reconnecting…", "off"));
})();
