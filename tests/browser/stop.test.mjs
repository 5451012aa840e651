// Stopping an issue mid-send, with the keyboard alone, in a real browser. Run by
// tests/browser.rs, which starts herald with a relay that holds each message after the
// first few, makes issue HERALD_ISSUE (one article, its title Persian with a U+202E in it)
// and afterwards checks what the relay received and what the ledger says. This script
// throws (exit 1) on the first thing that is not as it should be.
import assert from "node:assert/strict";
import { audit, base, browser, env, logIn, problems, shot, step, tabTo } from "./lib.mjs";

const issue = env("HERALD_ISSUE");

try {
  const staff = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await logIn(staff, env("HERALD_STAFF"), env("HERALD_STAFF_PASSWORD"));
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  // Loads and navigations of the page from here on: the issue page must not reload itself.
  let loads = 0;
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame()) loads += 1;
  });
  // The list of issues, with one on its way: its table is asked for again in place.
  await page.goto(`${base}/admin/issues`);
  await page.waitForRequest((r) => r.url() === `${base}/admin/issues` && r.resourceType() === "fetch", { timeout: 10000 });
  await page.waitForTimeout(500);
  assert.equal(loads, 1, "the list reloaded itself");
  assert.equal(await page.locator("#issues-list td", { hasText: "delivering" }).count(), 1);
  step("the list of issues updates in place");

  await page.goto(`${base}/admin/issues/${issue}`);
  await page.getByText("delivering").first().waitFor();
  loads = 1;
  step("the issue is on its way");

  // A right-to-left title, with an override in it, is shut in its own box: what follows
  // it on the same line — "(WMD)", the section — still reads left to right: "(" before the
  // name, ")" after it. (Leaked, the override would lay the line out right to left.)
  const order = await page.evaluate(() => {
    const name = [...document.querySelectorAll("main li span.fine bdi")].find((b) => b.textContent === "WMD");
    const span = name.parentElement;
    const at = (node, i) => {
      const r = document.createRange();
      r.setStart(node, i);
      r.setEnd(node, i + 1);
      return r.getBoundingClientRect().left;
    };
    const open = span.firstChild; // "("
    const close = span.lastChild; // ")"
    return [at(open, open.textContent.indexOf("(")), at(name.firstChild, 0), at(name.firstChild, 2), at(close, 0)];
  });
  assert.ok(
    order[0] < order[1] && order[1] < order[2] && order[2] < order[3],
    `"(WMD)" is laid out as ${order}`,
  );
  step("a Persian title with U+202E does not reorder its line");

  // The progress is asked for again in place, and a person can pause that.
  await page.waitForResponse((r) => r.url().endsWith(`/issues/${issue}/progress`) && r.ok(), { timeout: 10000 });
  const toggle = page.locator("#live-toggle");
  await tabTo(page, toggle);
  await page.keyboard.press("Space");
  assert.equal(await toggle.getAttribute("aria-pressed"), "true");
  assert.equal(await toggle.textContent(), "Resume updates");
  let asked = 0;
  const count = (r) => {
    if (r.url().endsWith("/progress")) asked += 1;
  };
  page.on("request", count);
  await page.waitForTimeout(4000);
  assert.equal(asked, 0, "paused, yet the progress was asked for");
  await page.keyboard.press("Space");
  assert.equal(await toggle.getAttribute("aria-pressed"), "false");
  await page.waitForResponse((r) => r.url().endsWith("/progress"), { timeout: 10000 });
  page.off("request", count);
  assert.equal(loads, 1, "the page reloaded itself");
  await audit(page);
  step("the progress updates in place, and pauses");

  // The stop, by keyboard: Tab to the field, type the number, Enter.
  const field = page.getByLabel(`Type its number, ${issue}, to stop it`);
  await tabTo(page, field);
  await page.keyboard.type(issue);
  await page.keyboard.press("Enter");
  await page.getByText("This issue was stopped").waitFor();
  const said = await page.locator("#stopped").textContent();
  assert.match(said, /went out before the stop; \d+ were cancelled/);
  assert.ok(await page.locator("main strong", { hasText: "stopped" }).count() === 1);
  const cancelled = page.locator("table.counts tr", { hasText: "cancelled" });
  assert.ok(Number((await cancelled.locator("td").nth(1).textContent()).replace(/\D/g, "")) > 0);
  assert.equal(await page.getByRole("heading", { name: "Stop this issue" }).count(), 0);
  await shot(page, "issue-stopped");
  step("stopped with the keyboard alone");

  // The log, followed live: its rows are asked for again in place.
  await page.goto(`${base}/admin/log?issue=${issue}&live=1`);
  const followed = loads;
  await page.waitForRequest((r) => r.url().includes("/admin/log?") && r.resourceType() === "fetch", { timeout: 10000 });
  await page.waitForTimeout(500);
  assert.equal(loads, followed, "the log reloaded itself");
  step("the log follows live in place");

  // The stop is in the audit log: who, from where, which issue.
  await page.goto(`${base}/admin/audit?action=issues+stop`);
  const line = page.locator("table.log tbody tr").first();
  assert.match(await line.textContent(), new RegExp(`ed\\s*console\\s*127\\.0\\.0\\.1\\s*issues stop\\s*${issue}\\s*ok, then /admin/issues/${issue}`));
  await audit(page);
  await shot(page, "audit");
  step("the stop is in the audit log");

  assert.deepEqual(problems, [], "no console errors (CSP violations, script errors)");
  console.log("browser: all good");
} finally {
  await browser.close();
}
