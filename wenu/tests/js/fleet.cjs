// Opens the dashboard of a running `wenu serve` in Debian's Chromium
// (headless) and reads its fleet panel, for wenu/tests/fleet_view.rs.
//
// Environment: PLAYWRIGHT_CORE, WENU_URL, VIEWER_TOKEN, DEVICES (how many
// rows to wait for), OUT_DIR. Prints one JSON object with what it saw.
"use strict";

const { chromium } = require(process.env.PLAYWRIGHT_CORE);

async function main() {
  const env = process.env;
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
    headless: true,
  });
  const seen = { consoleErrors: [] };
  try {
    const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
    page.on("console", (m) => m.type() === "error" && seen.consoleErrors.push(m.text()));
    page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
    await page.goto(`${env.WENU_URL}/dashboard#token=${env.VIEWER_TOKEN}`);
    await page.waitForFunction(
      (n) => document.querySelectorAll("#fleet-rows tr[data-device]").length === n &&
        document.querySelectorAll("a.device[data-presence]").length === n,
      Number(env.DEVICES),
      { timeout: 30000 },
    );
    seen.rows = await page.$$eval("#fleet-rows tr[data-device]", (rows) =>
      rows.map((r) => ({
        device: r.dataset.device,
        presence: r.dataset.presence,
        shown: r.children[1].textContent,
        firmware: r.children[3].textContent,
        config: r.children[5].textContent,
      })),
    );
    seen.counts = await page.$$eval("#fleet-summary [data-count]", (spans) =>
      Object.fromEntries(spans.map((s) => [s.dataset.count, parseInt(s.textContent, 10)])),
    );
    seen.tree = await page.$$eval("a.device", (links) =>
      Object.fromEntries(links.map((a) => [a.dataset.device, a.dataset.presence])),
    );
    await page.screenshot({ path: `${env.OUT_DIR}/fleet.png`, fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
