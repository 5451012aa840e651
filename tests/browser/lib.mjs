// What the browser scripts share: the browser (headless Chromium driven by playwright-core),
// the environment tests/browser.rs gives them, and the checks and moves a person's use of
// the console needs (log in, Tab to a control, audit a page).
//
// Env: HERALD_BASE (herald's address), HERALD_STAFF / HERALD_STAFF_PASSWORD,
// HERALD_OPERATOR / HERALD_OPERATOR_PASSWORD, HERALD_SHOTS (a folder for screenshots),
// HERALD_CHROMIUM (the browser, default Debian's).
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";

export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
export const base = env("HERALD_BASE");
export const shots = env("HERALD_SHOTS");
mkdirSync(shots, { recursive: true });

export const browser = await chromium.launch({
  executablePath: process.env.HERALD_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
// Every console error (a CSP violation, a script error) fails the run.
export const problems = [];
export const watch = (page) => {
  page.on("console", (m) => {
    // A 422 is the refusal this run provokes on purpose (the bad cron).
    if (m.type() === "error" && !/status of 422/.test(m.text())) {
      problems.push(`${page.url()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => problems.push(`${page.url()}: ${e.message}`));
};
export const shot = async (page, name) => {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: false });
};
export const step = (what) => console.log(`browser: ${what}`);
// An entry of the console's navigation bar.
export const nav = (page, name) =>
  page.getByRole("navigation", { name: "Console" }).getByRole("link", { name, exact: true });

// Every control has a name a screen reader says (a label, or a button's text), and the
// page is no wider than the window (nothing to scroll sideways at a laptop's width or a
// narrow one). Returns how many controls it checked.
export async function audit(page) {
  // An issue page still being delivered reloads itself every few seconds: an evaluation
  // caught by that reload is tried again on the new page.
  for (let attempt = 1; ; attempt++) {
    try {
      return await auditOnce(page);
    } catch (e) {
      const reloaded = /context was destroyed|reading 'scrollWidth'|navigation/i.test(String(e));
      if (!reloaded || attempt >= 5) throw e;
      await page.waitForLoadState();
    }
  }
}

export async function auditOnce(page) {
  const found = await page.evaluate(() => {
    const unnamed = [];
    const controls = [...document.querySelectorAll("input, select, textarea, button")].filter(
      (el) => el.type !== "hidden",
    );
    for (const el of controls) {
      const named =
        [...(el.labels || [])].some((l) => l.innerText.trim()) ||
        el.getAttribute("aria-label") ||
        (el.getAttribute("aria-labelledby") || "")
          .split(" ")
          .some((id) => document.getElementById(id)?.innerText.trim()) ||
        (el.tagName === "BUTTON" && el.innerText.trim());
      if (!named) unnamed.push(el.outerHTML.slice(0, 160));
    }
    return {
      unnamed,
      checked: controls.length,
      wider: document.documentElement.scrollWidth - window.innerWidth,
    };
  });
  assert.deepEqual(found.unnamed, [], `${page.url()}: controls without a label`);
  assert.ok(found.wider <= 0, `${page.url()}: ${found.wider}px wider than the window`);
  return found.checked;
}

// Press Tab until `target` has the focus (as a keyboard user would reach it), and check
// that one can see where the focus is.
export async function tabTo(page, target) {
  for (let i = 0; i < 80; i++) {
    await page.keyboard.press("Tab");
    if (await target.evaluate((el) => el === document.activeElement)) {
      const ring = await target.evaluate((el) => getComputedStyle(el).outlineStyle);
      assert.notEqual(ring, "none", `${page.url()}: no visible focus on ${await target.evaluate((el) => el.outerHTML.slice(0, 80))}`);
      return;
    }
  }
  throw new Error(`${page.url()}: Tab never reaches ${target}`);
}

export async function logIn(context, name, password) {
  const page = await context.newPage();
  watch(page);
  await page.goto(`${base}/admin`);
  // Not logged in: sent to the login page.
  assert.match(page.url(), /\/admin\/login$/);
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(password);
  return page;
}

