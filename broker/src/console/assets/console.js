// The console's script. Without it every page still works; it just does not update by
// itself.
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
// Keeps pages live. The dashboard gets each section's HTML (rendered and escaped on the
// server) whenever the estate changes; other pages fetch themselves again then and take
// their [data-live] parts from the fresh copy.
(() => {
  const status = document.getElementById("live");
  const show = (text, state) => {
    if (status) {
      status.textContent = text;
      status.dataset.state = state;
    }
  };
  const dashboard = document.getElementById("hosts");
  const parts = document.querySelectorAll("[data-live]");
  if (!dashboard && parts.length === 0) {
    if (status) status.hidden = true;
    return;
  }
  // Leave a part alone while the user is in one of its forms.
  const busy = (element) => element.contains(document.activeElement);
  let fetching = false;
  const refetch = async () => {
    if (fetching) return;
    fetching = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok || response.redirected) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const now = fresh.querySelectorAll("[data-live]");
      document.querySelectorAll("[data-live]").forEach((element, i) => {
        if (now[i] && !busy(element)) element.innerHTML = now[i].innerHTML;
      });
      document.body.dataset.updated = String(Date.now());
    } catch (_) {
      show("reconnecting…", "off");
    } finally {
      fetching = false;
    }
  };
  const events = new EventSource("/admin/events");
  events.addEventListener("sections", (event) => {
    if (dashboard) {
      const sections = JSON.parse(event.data);
      for (const [id, html] of Object.entries(sections)) {
        const element = document.getElementById(id);
        if (element && !busy(element)) element.innerHTML = html;
      }
      document.body.dataset.updated = String(Date.now());
    } else {
      refetch();
    }
    show("live", "on");
  });
  events.addEventListener("error", () => show("reconnecting…", "off"));
})();
// A desktop's thumbnail is fetched again every few seconds while the page is shown.
(() => {
  const image = document.querySelector("img[data-refresh-ms]");
  if (!image) return;
  const base = image.getAttribute("src");
  const every = Number(image.dataset.refreshMs) || 2000;
  image.addEventListener("load", () => {
    image.dataset.loaded = String(Date.now());
    image.classList.remove("unavailable");
  });
  image.addEventListener("error", () => image.classList.add("unavailable"));
  setInterval(() => {
    if (!document.hidden) image.src = `${base}?at=${Date.now()}`;
  }, every);
})();
