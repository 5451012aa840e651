// Load each HTML file given in a real browser (Debian's chromium, headless) at a phone's
// width and print, per file, one JSON line: how wide the page lays out, and how wide the
// viewport is, and which boxes cut their content off. A page wider than its viewport
// scrolls sideways on that phone.
// Usage: node layout.js WIDTH FILE...
const { chromium } = require("playwright-core");

(async () => {
  const [width, ...files] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: Number(width), height: 800 } });
    for (const f of files) {
      await page.goto("file://" + f);
      const measured = await page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        clientWidth: document.documentElement.clientWidth,
        // Boxes whose content is wider than they are: with overflow:hidden the page does
        // not scroll, the words are cut off instead.
        clipped: [...document.querySelectorAll("body *")]
          .filter((e) => getComputedStyle(e).display !== "inline" && e.scrollWidth > e.clientWidth + 1)
          .map((e) => e.tagName + ": " + e.textContent.trim().slice(0, 60)),
      }));
      console.log(JSON.stringify({ file: f, ...measured }));
    }
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
