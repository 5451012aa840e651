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
