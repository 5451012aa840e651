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

// An issue on its way: its progress is asked for again every few seconds and replaced in
// place (the page itself never reloads, so a form being typed into is left alone). The
// summary line is said to screen readers when it changes; "Pause updates" stops it all
// (WCAG 2.2.2). Once the issue has settled, the updates end by themselves.
for (const region of document.querySelectorAll("[data-live]")) {
  const toggle = document.getElementById("live-toggle");
  const said = document.getElementById("progress-said");
  let paused = false;
  let timer = 0;
  const summary = () => region.querySelector("#progress-summary");
  const settled = () => summary() !== null && summary().hasAttribute("data-settled");
  const next = () => {
    clearTimeout(timer);
    if (!paused && !settled()) timer = setTimeout(ask, 3000);
  };
  const ask = () => {
    fetch(region.dataset.live, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => {
        const before = summary() ? summary().textContent : "";
        region.innerHTML = html;
        const now = summary() ? summary().textContent : "";
        if (said && now !== before) said.textContent = now;
        if (settled() && toggle) toggle.hidden = true;
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
}
