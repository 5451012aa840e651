// herald's console in a real browser (headless Chromium driven by playwright-core): what
// "done" means for the console, step by step as a person would do it. Run by
// tests/browser.rs, which starts herald, seeds readers and checks the mail that arrives;
// this script throws (exit 1) on the first thing that is not as it should be.
//
// Env (beside lib.mjs's): HERALD_READERS (how many readers of wmd), HERALD_FIND (one
// reader's address, for the operator); HERALD_SHOTS gets the screenshots the README's tour
// shows.
import assert from "node:assert/strict";
import { audit, base, browser, env, logIn, nav, problems, shot, step, tabTo, watch } from "./lib.mjs";

const readers = Number(env("HERALD_READERS"));

try {
  const staff = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  let page = await logIn(staff, env("HERALD_STAFF"), env("HERALD_STAFF_PASSWORD"));
  await shot(page, "login");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  step("logged in");
  await audit(page);

  // A section, added in the browser.
  await nav(page, "Sections").click();
  await page.getByLabel("Slug").fill("cyber");
  await page.getByLabel("Name").fill("Cyber");
  await page.getByLabel("Description").fill("Attacks, breaches and the people behind them");
  await page.getByRole("button", { name: "Add the section" }).click();
  await page.getByRole("cell", { name: "cyber", exact: true }).waitFor();
  step("section added");
  await audit(page);

  // An article, by hand, into the readers' section.
  await nav(page, "Articles").click();
  await page.locator("#section").selectOption("wmd");
  await page.getByLabel("Title", { exact: true }).fill("Inspectors find the <blueprints>");
  await page.getByLabel("Address (URL)").fill("https://news.example.com/2026/03/blueprints");
  await page.locator("#summary").fill("<p>Found in a <b>basement</b>.</p>");
  await page.getByRole("button", { name: "Add the article" }).click();
  await page.getByText("Added: the next digest of its section carries it.").waitFor();
  step("article added");
  await audit(page);

  // A schedule: a bad cron first, seen as one types and again when saving.
  await nav(page, "Schedules").click();
  await page.getByLabel("Name", { exact: true }).fill("morning");
  const cron = page.getByLabel("When: a cron expression");
  await cron.fill("0 7 * * mon-fry");
  await page.locator("#cron-check").getByText("invalid cron expression").waitFor();
  step("a bad cron is flagged as it is typed");
  await page.getByLabel("Time zone").fill("Europe/Berlin");
  await page.locator('input[name=sections][value=wmd]').check();
  await page.locator('input[name=sections][value=cyber]').check();
  await page.getByRole("button", { name: "Save the schedule" }).click();
  // Refused, the reason beside the field, what was typed still there.
  await page.locator("#cron[aria-invalid=true]").waitFor();
  await audit(page);
  assert.equal(await cron.inputValue(), "0 7 * * mon-fry");
  assert.equal(await page.getByLabel("Time zone").inputValue(), "Europe/Berlin");
  await cron.scrollIntoViewIfNeeded();
  await shot(page, "schedule-bad-cron");
  step("the bad cron is refused on save");
  await cron.fill("0 7 * * 1-5");
  const check = page.locator("#cron-check");
  await check.getByText("Monday, Tuesday, Wednesday, Thursday, and Friday").waitFor();
  assert.equal(await check.locator("li").count(), 5);
  // In the schedule's zone, UTC beside it.
  assert.match(await check.innerText(), /07:00 CET \(06:00 UTC\)/);
  await check.scrollIntoViewIfNeeded();
  await shot(page, "schedule-times");
  step("the next five runs are shown before saving");
  await page.getByRole("button", { name: "Save the schedule" }).click();
  await page.getByRole("heading", { name: "Schedule morning" }).waitFor();
  step("schedule saved");
  await audit(page);

  // The preview: text on the page, the HTML part on its own.
  const preview = page.locator("pre.mail");
  await preview.getByText("Inspectors find the <blueprints>").waitFor();
  await preview.scrollIntoViewIfNeeded();
  await shot(page, "schedule-preview");
  const [html] = await Promise.all([
    staff.waitForEvent("page"),
    page.getByRole("link", { name: "Open the HTML part" }).click(),
  ]);
  watch(html);
  await html.waitForLoadState();
  await html.getByRole("link", { name: "Inspectors find the <blueprints>" }).first().waitFor();
  await shot(html, "digest-html");
  await html.close();
  step("previewed as text and HTML");

  // Send now: the box must be ticked first (the browser will not submit without it).
  const sendNow = page.getByRole("button", { name: "Send now" });
  await sendNow.click();
  assert.match(page.url(), /\/admin\/schedules\/morning$/, "not sent without the box");
  // It says how many readers it would reach, before it is sent.
  await page.getByLabel(`Yes, send this issue to its ${readers} readers now`).check();
  await sendNow.click();
  await page.getByRole("heading", { name: /^Issue #\d+ of morning$/ }).waitFor();
  step("sent now");
  // The page updates its progress while the issue is on its way; wait for it to say "sent".
  await page.locator("strong", { hasText: /^sent$/ }).waitFor({ timeout: 180_000 });
  await page.locator("#progress-summary", { hasText: `${readers} of ${readers} settled (100%)` }).waitFor();
  await audit(page);
  await shot(page, "issue");
  step("every reader's mail is sent");

  // The log: every send of the issue, each with its Message-ID and the server's reply.
  await page.getByRole("link", { name: "This issue in the delivery log" }).click();
  await page.getByRole("heading", { name: "Delivery log" }).waitFor();
  const rows = page.locator("table.log tbody tr");
  assert.equal(await rows.count(), Math.min(readers, 50));
  assert.equal(await page.locator("table.log td.status-sent").count(), Math.min(readers, 50));
  await shot(page, "log");
  step("the sends are in the log");
  await staff.close();

  // An operator finds what happened to one address's mail, with the keyboard alone.
  const started = Date.now();
  const ops = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await ops.newPage();
  watch(page);
  await page.goto(`${base}/admin`);
  assert.match(page.url(), /\/admin\/login$/);
  // The name field has the focus from the start.
  assert.equal(await page.evaluate(() => document.activeElement.id), "name");
  await page.keyboard.type(env("HERALD_OPERATOR"));
  await page.keyboard.press("Tab");
  await page.keyboard.type(env("HERALD_OPERATOR_PASSWORD"));
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  await tabTo(page, nav(page, "Delivery log"));
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Delivery log" }).waitFor();
  await tabTo(page, page.getByLabel("Address", { exact: true }));
  await page.keyboard.type(env("HERALD_FIND"));
  await page.keyboard.press("Enter");
  await page.locator("table.log td.status-sent").waitFor();
  assert.equal(await page.locator("table.log tbody tr").count(), 1);
  await tabTo(page, page.getByRole("link", { name: env("HERALD_FIND") }));
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: env("HERALD_FIND") }).waitFor();
  await page.getByText("Mail sent (1)").waitFor();
  assert.ok(Date.now() - started < 60_000, "found in under a minute");
  await shot(page, "subscriber");
  // An operator is offered no change.
  await nav(page, "Schedules").click();
  assert.equal(await page.getByRole("button", { name: "Save the schedule" }).count(), 0);
  await nav(page, "Dashboard").click();
  await page.getByRole("heading", { name: "Sent per hour, last 7 days" }).waitFor();
  await shot(page, "dashboard");
  step("an operator found one address's mail, by keyboard");
  await ops.close();

  // Every page of the console, at a laptop's width, a narrow window and a phone's (390 px):
  // labels on every control, nothing wider than the window.
  for (const width of [1280, 760, 390]) {
    const ctx = await browser.newContext({ viewport: { width, height: 860 } });
    page = await logIn(ctx, env("HERALD_STAFF"), env("HERALD_STAFF_PASSWORD"));
    await audit(page);
    await page.getByRole("button", { name: "Log in" }).click();
    let controls = 0;
    for (const name of [
      "Dashboard", "Sections", "Articles", "Schedules", "Issues", "Delivery log",
      "Subscribers", "Bounces", "Suppressions", "Audit",
    ]) {
      await nav(page, name).click();
      await page.waitForLoadState();
      controls += await audit(page);
    }
    for (const path of ["/schedules/morning", "/issues/1", "/sections/wmd", "/articles/1", `/log?address=${env("HERALD_FIND")}`]) {
      await page.goto(`${base}/admin${path}`);
      controls += await audit(page);
    }
    await page.getByRole("link", { name: env("HERALD_FIND") }).click();
    controls += await audit(page);
    assert.ok(controls > 30, `checked ${controls} controls`);
    await ctx.close();
  }
  step("every control is labelled, and every page fits a laptop, a narrow window and a phone");

  // Without JavaScript, the times are checked by the server.
  const plain = await browser.newContext({ javaScriptEnabled: false });
  page = await logIn(plain, env("HERALD_STAFF"), env("HERALD_STAFF_PASSWORD"));
  await page.getByRole("button", { name: "Log in" }).click();
  await nav(page, "Schedules").click();
  await page.getByLabel("When: a cron expression").fill("30 18 * * 0");
  await page.getByRole("button", { name: "Check the times" }).click();
  await page.locator("#cron-check").getByText("18:30").first().waitFor();
  assert.equal(await page.locator("#cron-check li").count(), 5);
  step("without JavaScript, the server checks the times");
  await plain.close();

  assert.deepEqual(problems, [], "no console errors (CSP violations, script errors)");
  console.log("browser: all good");
} finally {
  await browser.close();
}
