// Drives Debian's Chromium (headless) through the dashboard and the
// backoffice of a running `wenu serve`, for wenu/tests/dashboard.rs.
//
// Environment: PLAYWRIGHT_CORE (path of the playwright-core package),
// WENU_URL, VIEWER_TOKEN, ADMIN_TOKEN, DEVICE, SENSOR (to create), OUT_DIR.
// Prints one JSON object with what it saw; the Rust test asserts on it.
"use strict";

const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

async function main() {
  const env = process.env;
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS, headless: true });
  const seen = { consoleErrors: [], externalRequests: [] };
  try {
    const watch = (page) => {
      page.on("console", (m) => m.type() === "error" && seen.consoleErrors.push(m.text()));
      page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
      page.on("request", (r) => !r.url().startsWith(env.WENU_URL) && seen.externalRequests.push(r.url()));
    };

    // The dashboard of a viewer: every chart of the first device draws buckets.
    const dashboard = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
    watch(dashboard);
    await dashboard.goto(`${env.WENU_URL}/dashboard#token=${env.VIEWER_TOKEN}&device=${env.DEVICE}`);
    await dashboard.waitForFunction(
      () => {
        const charts = [...document.querySelectorAll(".chart")];
        return charts.length > 0 && charts.every((c) => Number(c.dataset.points) > 0);
      },
      null,
      { timeout: 30000 },
    );
    seen.charts = await dashboard.$$eval(".chart", (charts) =>
      charts.map((c) => ({
        sensor: c.dataset.sensor,
        points: Number(c.dataset.points),
        canvas: !!c.querySelector("canvas"),
        latest: c.querySelector(".latest").textContent,
      })),
    );
    seen.devicesInTree = await dashboard.$$eval("a.device", (a) => a.length);
    seen.completeness = await dashboard.$$eval(".completeness", (n) => n.map((x) => x.textContent));
    // Live updates arrive over the event stream.
    await dashboard.waitForFunction(() => document.getElementById("live-state").textContent === "live", null, {
      timeout: 15000,
    });
    seen.live = true;
    // The active alarm the test raised is listed, with its rule's name.
    await dashboard.waitForSelector("#alarm-rows tr[data-alarm]", { timeout: 15000 });
    seen.alarms = await dashboard.$$eval("#alarm-rows tr[data-alarm]", (rows) => rows.map((r) => r.children[1].textContent));
    await dashboard.screenshot({ path: `${env.OUT_DIR}/dashboard.png`, fullPage: true });

    // The alarm panel of an admin: a silence for the device and an e-mail
    // channel, made in its forms, and a test message sent to the channel.
    const admin = await (await browser.newContext({ viewport: { width: 1400, height: 1200 } })).newPage();
    watch(admin);
    await admin.goto(`${env.WENU_URL}/dashboard#token=${env.ADMIN_TOKEN}&device=${env.DEVICE}`);
    await admin.waitForSelector("#alarm-rows tr[data-alarm]", { timeout: 30000 });
    await admin.locator("#notifications summary").click();
    const silence = admin.locator("#silence-form");
    await silence.locator("[name=device]").fill(env.DEVICE);
    await silence.locator("[name=reason]").fill("maintenance");
    await silence.locator("button[type=submit]").click();
    await admin.waitForSelector("#silence-rows tr[data-silence]", { timeout: 15000 });
    seen.silences = await admin.$$eval("#silence-rows tr", (rows) => rows.map((r) => r.children[0].textContent));
    const channel = admin.locator("#channel-form");
    await channel.locator("[name=url]").fill("mailto:ops@acme.example");
    await channel.locator("button[type=submit]").click();
    await admin.waitForSelector("#channel-rows tr[data-channel]", { timeout: 15000 });
    seen.channels = await admin.$$eval("#channel-rows tr", (rows) => rows.map((r) => r.children[1].textContent));
    await admin.locator("#channel-rows tr button.test-channel").click();
    await admin.waitForFunction(() => !/^(sending…)?$/.test(document.querySelector(".test-outcome").textContent), null, {
      timeout: 20000,
    });
    seen.testOutcome = await admin.$eval(".test-outcome", (s) => s.textContent);

    // The backoffice of an admin: the sensor form creates a sensor.
    const backoffice = await (await browser.newContext({ viewport: { width: 1300, height: 1400 } })).newPage();
    watch(backoffice);
    await backoffice.goto(`${env.WENU_URL}/backoffice#token=${env.ADMIN_TOKEN}`);
    await backoffice.waitForSelector("body[data-ready=true]", { timeout: 30000 });
    seen.backofficeChannels = await backoffice.$$eval("#notifications #channel-rows tr", (rows) => rows.map((r) => r.children[2].textContent));
    seen.backofficeSilences = await backoffice.$$eval("#notifications #silence-rows tr", (rows) => rows.map((r) => r.dataset.active));
    await backoffice.selectOption("#sensor-device", env.DEVICE);
    const form = backoffice.locator("#sensor-form");
    await form.locator("[name=sensor]").fill(env.SENSOR);
    await form.locator("[name=kind]").fill("co2");
    await form.locator("[name=unit]").fill("ppm");
    await form.locator("[name=valid_min]").fill("0");
    await form.locator("[name=valid_max]").fill("5000");
    await form.locator("button[type=submit]").click();
    const result = backoffice.locator("#sensors .result");
    await backoffice.waitForFunction(() => document.querySelector("#sensors .result").textContent !== "", null, {
      timeout: 15000,
    });
    seen.sensorFormResult = { text: await result.textContent(), ok: (await result.getAttribute("class")).includes("ok") };
    await backoffice.waitForSelector(`#sensor-rows tr[data-sensor="${env.SENSOR}"]`, { timeout: 15000 });
    seen.sensorRowShown = true;
    seen.auditFirstAction = await backoffice.$eval("#audit-rows tr td:nth-child(3)", (td) => td.textContent);

    // The device's desired configuration and a command, from their forms.
    await backoffice.selectOption("#downlink-device", env.DEVICE);
    await backoffice.waitForFunction(() => document.getElementById("downlink-state").textContent !== "", null, {
      timeout: 15000,
    });
    seen.presenceColumn = await backoffice.$eval(`#device-rows tr[data-device="${env.DEVICE}"]`, (tr) => tr.dataset.presence);
    await backoffice.locator("#config-form textarea").fill('{"interval_s": 15}');
    await backoffice.locator("#config-form button[type=submit]").click();
    await backoffice.waitForFunction(() => /^Configuration v1 /.test(document.querySelector("#config-form + .result").textContent), null, {
      timeout: 15000,
    });
    seen.configResult = await backoffice.$eval("#config-form + .result", (p) => p.textContent);
    await backoffice.locator("#command-form [name=name]").fill("sample_now");
    await backoffice.locator("#command-form button[type=submit]").click();
    await backoffice.waitForSelector("#command-rows tr[data-status=pending]", { timeout: 15000 });
    seen.commands = await backoffice.$$eval("#command-rows tr", (rows) => rows.map((r) => r.children[1].textContent));
    seen.downlinkState = await backoffice.$eval("#downlink-state", (p) => p.textContent);
    await backoffice.screenshot({ path: `${env.OUT_DIR}/backoffice.png`, fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
