// The console's only script, and only an enhancement: every page works without it.
//
// A schedule form shows the cron expression in words and its next runs as one types (the
// same fragment the "Check the times" button renders on the server).
"use strict";
for (const form of document.querySelectorAll("form[data-check]")) {
  const out = form.querySelector("#cron-check");
  let timer = 0;
  let asked = 0;
  const ask = () => {
    const mine = ++asked;
    const q = new URLSearchParams({ cron: form.elements.cron.value, timezone: form.elements.timezone.value });
    fetch(form.dataset.check + "?" + q, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => {
        // An older answer arriving late must not replace a newer one.
        if (mine === asked) out.innerHTML = html;
      })
      .catch(() => {});
  };
  form.addEventListener("input", (e) => {
    if (e.target.name === "cron" || e.target.name === "timezone") {
      clearTimeout(timer);
      timer = setTimeout(ask, 250);
    }
  });
}

// What is on its way is asked for again every few seconds and replaced in place: the page
// itself never reloads, so a form being typed into is left alone (WCAG 2.2.1). "Pause
// updates" stops it (WCAG 2.2.2); once nothing is on its way, the updates end by
// themselves. `update()` replaces the region and says whether it is still live.
const keepUpdated = (region, update) => {
  const toggle = document.getElementById("live-toggle");
  let paused = false;
  let live = true;
  let timer = 0;
  const next = () => {
    clearTimeout(timer);
    if (!paused && live) timer = setTimeout(ask, 3000);
  };
  const ask = () => {
    update()
      .then((still) => {
        live = still;
        if (!live && toggle) toggle.hidden = true;
      })
      .catch(() => {})
      .finally(next);
  };
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener("click", () => {
      paused = !paused;
      toggle.setAttribute("aria-pressed", String(paused));
      toggle.textContent = paused ? "Resume updates" : "Pause updates";
      next();
    });
  }
  next();
};

const text = (r) => (r.ok ? r.text() : Promise.reject(r.status));

// An issue's page: its progress fragment; the summary line is said to screen readers when
// it changes.
for (const region of document.querySelectorAll("[data-live]")) {
  const said = document.getElementById("progress-said");
  const summary = () => region.querySelector("#progress-summary");
  keepUpdated(region, () =>
    fetch(region.dataset.live, { credentials: "same-origin" })
      .then(text)
      .then((html) => {
        const before = summary() ? summary().textContent : "";
        region.innerHTML = html;
        const now = summary() ? summary().textContent : "";
        if (said && now !== before) said.textContent = now;
        return !(summary() && summary().hasAttribute("data-settled"));
      }),
  );
}

// A list with something on its way (the issues) or followed live (the delivery log): the
// same page asked for again, and this region taken from it; live while the new page still
// marks it so.
for (const region of document.querySelectorAll("[data-live-page]")) {
  keepUpdated(region, () =>
    fetch(location.href, { credentials: "same-origin" })
      .then(text)
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
        if (!fresh) return false;
        region.innerHTML = fresh.innerHTML;
        return fresh.hasAttribute("data-live-page");
      }),
  );
}
