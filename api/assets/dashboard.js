// The company dashboard: active alarms (acknowledged from here by admins),
// the fleet's state (fleet.js), sites → devices → sensors, one chart per sensor (uPlot), resolution and
// range pickers, completeness per device, live updates from /api/v1/live.
"use strict";

(async () => {
  const { api, el, query, formatValue, showError } = Wenu;
  const app = document.getElementById("app");

  const me = await Wenu.whoAmI(app);
  if (!me) return;

  // Operators pick the company they look at; everyone else sees their own.
  let company = me.company;
  if (!company) {
    const companies = (await api("/companies")).items;
    const wanted = new URLSearchParams(location.hash.slice(1)).get("company");
    company = companies.includes(wanted) ? wanted : companies[0];
    const picker = el("select", { id: "company-picker" }, companies.map((c) => el("option", { value: c }, c)));
    picker.value = company;
    picker.addEventListener("change", () => {
      location.hash = "company=" + encodeURIComponent(picker.value);
      location.reload();
    });
    document.getElementById("company").replaceChildren("operator · ", picker);
  } else {
    document.getElementById("company").textContent = company + " · " + me.role;
  }
  if (!company) {
    showError(app, new Error("There are no companies yet: create one in the backoffice."));
    return;
  }
  const scope = me.company ? {} : { company };

  const tree = document.getElementById("tree");
  const charts = document.getElementById("charts");
  const resolutionPicker = document.getElementById("resolution");
  const rangePicker = document.getElementById("range");
  const state = { device: null, series: [], plots: new Map(), latest: new Map(), reloadTimer: null };

  const RANGE_MS = { "-1h": 3.6e6, "-6h": 2.16e7, "-24h": 8.64e7, "-7d": 6.048e8, "-30d": 2.592e9, "-365d": 3.1536e10 };
  const BUCKET_MS = { "1m": 6e4, "1h": 3.6e6, "1d": 8.64e7 };
  const MAX_BUCKETS = 20000;

  // A resolution fine enough to be useful and coarse enough for the API's limit.
  function effectiveResolution() {
    const range = RANGE_MS[rangePicker.value];
    for (const res of ["1m", "1h", "1d"]) {
      if (BUCKET_MS[res] < BUCKET_MS[resolutionPicker.value]) continue;
      if (range / BUCKET_MS[res] <= MAX_BUCKETS) return res;
    }
    return "1d";
  }

  async function loadTree() {
    const [sites, devices, completeness, series] = await Promise.all([
      api("/sites" + query(scope)),
      api("/devices" + query(scope)),
      api("/completeness" + query(scope)),
      api("/series" + query(scope)),
    ]);
    state.series = series.items;
    const ratioOf = new Map(completeness.items.map((c) => [c.device, c]));
    const groups = new Map(sites.items.map((s) => [s.id, { name: s.name, devices: [] }]));
    groups.set("", { name: "No site", devices: [] });
    for (const device of devices.items) (groups.get(device.site || "") || groups.get("")).devices.push(device);

    tree.replaceChildren(
      ...[...groups.entries()]
        .filter(([, g]) => g.devices.length)
        .map(([id, group]) =>
          el(
            "details",
            { open: true, class: "site", "data-site": id || "none" },
            el("summary", {}, group.name, el("span", { class: "muted" }, " (" + group.devices.length + ")")),
            el(
              "ul",
              {},
              group.devices.map((device) => {
                const c = ratioOf.get(device.id);
                const pct = c && c.ratio !== null ? Math.round(c.ratio * 1000) / 10 : null;
                const badge = pct === null ? "no data" : pct + "%";
                const title = c ? `${c.received} of ${c.expected} messages in the last 24 h` : "";
                return el(
                  "li",
                  {},
                  el(
                    "a",
                    {
                      href: "#",
                      class: "device" + (device.enabled ? "" : " disabled"),
                      "data-device": device.id,
                      onclick: (event) => {
                        event.preventDefault();
                        selectDevice(device.id);
                      },
                    },
                    device.id,
                  ),
                  el("span", { class: "completeness " + (pct !== null && pct < 95 ? "warn" : ""), title }, badge),
                );
              }),
            ),
          ),
        ),
    );
    if (!devices.items.length) tree.append(el("p", { class: "muted" }, "No devices yet."));
    return devices.items;
  }

  function markSelected() {
    for (const a of tree.querySelectorAll("a.device")) a.classList.toggle("selected", a.dataset.device === state.device);
  }

  function selectDevice(device) {
    state.device = device;
    markSelected();
    document.getElementById("device-title").textContent = device;
    drawCharts();
  }

  async function drawCharts() {
    for (const plot of state.plots.values()) plot.destroy();
    state.plots.clear();
    const sensors = state.series.filter((s) => s.device === state.device);
    if (!sensors.length) {
      charts.replaceChildren(el("p", { class: "muted" }, "This device has no sensors defined."));
      return;
    }
    charts.replaceChildren(
      ...sensors.map((s) =>
        el(
          "div",
          { class: "card chart", id: "chart-" + s.sensor, "data-sensor": s.sensor, "data-points": "0" },
          el(
            "h3",
            {},
            s.sensor,
            el("span", { class: "muted" }, ` ${s.kind}, ${s.unit}`),
            el("span", { class: "latest", id: "latest-" + s.sensor }, "–"),
          ),
          el("div", { class: "plot" }),
          el("p", { class: "muted status" }),
        ),
      ),
    );
    const latest = await api("/latest" + query({ ...scope, device: state.device })).catch(() => ({ items: [] }));
    for (const value of latest.items) showLatest(value.sensor, value.value, value.ts);
    await Promise.all(sensors.map((s) => drawChart(s)));
  }

  function showLatest(sensor, value, ts) {
    const node = document.getElementById("latest-" + sensor);
    if (!node) return;
    node.textContent = formatValue(value);
    node.title = new Date(ts).toISOString();
  }

  async function drawChart(series) {
    const card = document.getElementById("chart-" + series.sensor);
    const res = effectiveResolution();
    const params = { ...scope, device: series.device, sensor: series.sensor, res, from: rangePicker.value, to: "now" };
    let buckets;
    try {
      buckets = (await api("/stats" + query(params))).items;
    } catch (error) {
      showError(card.querySelector(".status"), error);
      return;
    }
    const x = buckets.map((b) => b.bucket_ms / 1000);
    const data = [x, buckets.map((b) => b.mean), buckets.map((b) => b.min), buckets.map((b) => b.max)];
    // The card's padding (2 × 1rem) and a little room for the border.
    const width = Math.max(300, card.clientWidth - 40);
    const options = {
      width,
      height: 220,
      // The range asked for, not just the buckets' span (one bucket alone would spread over years).
      scales: { x: { time: true, range: () => [(Date.now() - RANGE_MS[rangePicker.value]) / 1000, Date.now() / 1000] } },
      axes: [{}, { label: series.unit, size: 60 }],
      series: [
        {},
        { label: "mean", stroke: "#2563eb", width: 2, points: { show: buckets.length < 120 } },
        { label: "min", stroke: "#93c5fd", dash: [4, 4] },
        { label: "max", stroke: "#f59e0b", dash: [4, 4] },
      ],
    };
    const plotNode = card.querySelector(".plot");
    plotNode.replaceChildren();
    const old = state.plots.get(series.sensor);
    if (old) old.destroy();
    state.plots.set(series.sensor, new uPlot(options, data, plotNode));
    // What the browser test reads: how many buckets the chart is drawing.
    card.dataset.points = String(buckets.length);
    card.dataset.resolution = res;
    const note = res !== resolutionPicker.value ? ` (shown at ${res}: the range is too long for ${resolutionPicker.value})` : "";
    card.querySelector(".status").textContent = `${buckets.length} buckets of ${res}${note}`;
  }

  // Raised and acknowledged alarms, most severe first; a live `alarm` event reloads them.
  const alarmRows = document.getElementById("alarm-rows");
  const canAcknowledge = me.role !== "viewer";
  async function loadAlarms() {
    const alarms = await api("/alarms" + query(scope));
    document.getElementById("alarm-count").textContent = String(alarms.length);
    document.getElementById("alarm-count").classList.toggle("warn", alarms.length > 0);
    alarmRows.replaceChildren(
      ...alarms.map((a) => {
        const status = a.status === "acknowledged"
          ? el("span", { title: a.acknowledged.comment || "" }, "acknowledged by " + a.acknowledged.by)
          : canAcknowledge
            ? el("button", { type: "button", class: "ack" }, "Acknowledge")
            : "raised";
        if (status.tagName === "BUTTON") {
          status.addEventListener("click", async () => {
            const comment = prompt("Comment (optional)") ?? "";
            await api(`/alarms/${a.id}/ack` + query(scope), { method: "POST", body: { comment } })
              .catch((error) => showError(alarmRows, error));
            await loadAlarms();
          });
        }
        const device = el("a", { href: "#device=" + encodeURIComponent(a.device) }, a.device + (a.sensor ? " · " + a.sensor : ""));
        device.addEventListener("click", () => selectDevice(a.device));
        return el("tr", { "data-alarm": a.id, class: "severity-" + a.severity }, [
          el("td", {}, a.severity),
          el("td", {}, a.rule_name),
          el("td", {}, device),
          el("td", {}, new Date(a.raised_at).toLocaleString()),
          el("td", {}, a.detail),
          el("td", {}, status, a.escalated && a.escalated.length
            ? el("span", { class: "muted escalated" }, ` · escalated after ${Math.round(Math.min(...a.escalated) / 60)} min`)
            : ""),
        ]);
      }),
    );
  }

  // Live readings: the latest value changes at once; the charts redraw at
  // most every 5 s (a new reading changes only the newest bucket).
  function onLive(name, data) {
    if (name === "alarm") {
      loadAlarms().catch(() => {});
      return;
    }
    if (name !== "readings") return;
    let touched = false;
    for (const r of data) {
      if (r.device !== state.device) continue;
      showLatest(r.sensor, r.value, r.ts);
      touched = true;
    }
    if (touched && !state.reloadTimer) {
      state.reloadTimer = setTimeout(async () => {
        state.reloadTimer = null;
        for (const s of state.series.filter((s) => s.device === state.device)) await drawChart(s);
      }, 5000);
    }
  }

  const liveBadge = document.getElementById("live-state");
  Wenu.subscribe("/live" + query(scope), onLive, (s) => {
    liveBadge.textContent = s;
    liveBadge.classList.toggle("ok", s === "live");
  });

  resolutionPicker.addEventListener("change", drawCharts);
  rangePicker.addEventListener("change", drawCharts);
  let resizeTimer;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(drawCharts, 200);
  });

  loadAlarms().catch((error) => showError(alarmRows, error));
  WenuNotify.start(scope, me.role).catch((error) => showError(document.getElementById("notify-error"), error));
  const fleetLoaded = WenuFleet.start(scope, (device) => selectDevice(device)).catch((error) =>
    showError(document.getElementById("fleet-rows"), error),
  );
  setInterval(() => loadAlarms().catch(() => {}), 30000);
  try {
    const devices = await loadTree();
    const wanted = new URLSearchParams(location.hash.slice(1)).get("device");
    const first = devices.find((d) => d.id === wanted) || devices[0];
    if (first) selectDevice(first.id);
    // The tree's presence marks come with the fleet panel.
    fleetLoaded.then(WenuFleet.markTree);
    // Completeness and new devices, once a minute.
    const refresh = () => loadTree().then(markSelected).then(WenuFleet.markTree);
    setInterval(() => refresh().catch(() => {}), 60000);
  } catch (error) {
    showError(charts, error);
  }
})();
