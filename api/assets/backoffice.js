// The backoffice: the registry (companies, sites, devices, sensors), each
// device's presence, desired configuration and commands, API tokens and the
// audit log, for admin and operator tokens.
"use strict";

(async () => {
  const { api, el, query, showError } = Wenu;
  const app = document.getElementById("app");

  const me = await Wenu.whoAmI(app);
  if (!me) return;
  if (me.role === "viewer") {
    showError(app, new Error("A viewer token cannot manage the registry; sign in with an admin or operator token."));
    return;
  }
  const operator = me.role === "operator";
  let company = me.company;

  const $ = (id) => document.getElementById(id);
  const scope = () => (operator ? { company } : {});

  // Runs a form's action, shows its outcome next to it, then refreshes.
  function onSubmit(form, action) {
    // The outcome line right after the form (a section may hold several forms).
    const next = form.nextElementSibling;
    const result = next && next.classList.contains("result") ? next : form.parentElement.querySelector(".result");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = Object.fromEntries(new FormData(form).entries());
      try {
        const message = await action(values);
        result.className = "result ok";
        result.textContent = message;
        await refresh();
      } catch (error) {
        result.className = "result error";
        result.textContent = error.message;
      }
    });
  }

  function numberOrNull(text) {
    return text === undefined || text === "" ? null : Number(text);
  }

  async function loadCompanies() {
    const companies = (await api("/companies")).items;
    if (operator) {
      $("companies").hidden = false;
      if (!companies.includes(company)) company = new URLSearchParams(location.hash.slice(1)).get("company") || companies[0];
      if (!companies.includes(company)) company = companies[0];
      $("company-list").replaceChildren(
        ...companies.map((c) =>
          el(
            "li",
            {},
            el(
              "a",
              {
                href: "#company=" + encodeURIComponent(c),
                class: c === company ? "selected" : "",
                onclick: () => {
                  company = c;
                  setTimeout(refresh);
                },
              },
              c,
            ),
          ),
        ),
      );
      $("company").textContent = "operator · managing " + (company || "no company yet");
    } else {
      $("company").textContent = company + " · " + me.role;
      for (const option of document.querySelectorAll(".operator-only")) option.remove();
    }
  }

  async function loadSites() {
    const sites = (await api("/sites" + query(scope()))).items;
    $("site-rows").replaceChildren(
      ...sites.map((s) =>
        el(
          "tr",
          {},
          el("td", {}, s.id),
          el("td", {}, s.name),
          el("td", {}, el("button", { class: "link", onclick: () => act(`/sites/${s.id}` + query(scope()), "DELETE") }, "delete")),
        ),
      ),
    );
    for (const select of document.querySelectorAll(".site-options")) {
      select.replaceChildren(el("option", { value: "" }, "no site"), ...sites.map((s) => el("option", { value: s.id }, s.name)));
    }
    return sites;
  }

  async function loadDevices() {
    const [devices, fleet] = await Promise.all([
      api("/devices" + query(scope())).then((r) => r.items),
      api("/fleet" + query(scope())),
    ]);
    const stateOf = new Map(fleet.items.map((f) => [f.device_id, f]));
    const configOf = (f) =>
      !f || f.desired_config_version == null
        ? (f && f.applied_config_version != null ? "v" + f.applied_config_version : "–")
        : `${f.applied_config_version == null ? "none" : "v" + f.applied_config_version}${f.config_stale ? " → v" + f.desired_config_version : ""}`;
    $("device-rows").replaceChildren(
      ...devices.map((d) =>
        el(
          "tr",
          { "data-device": d.id, "data-presence": stateOf.get(d.id)?.presence || "" },
          el("td", {}, d.id),
          el("td", {}, d.site || "–"),
          el("td", {}, d.live_key_ids.join(", ")),
          el("td", {}, d.enabled ? "enabled" : "disabled"),
          el("td", {}, el("span", { class: "presence presence-" + (stateOf.get(d.id)?.presence || "") }, (stateOf.get(d.id)?.presence || "–").replace("_", " "))),
          el("td", {}, stateOf.get(d.id)?.firmware || "–"),
          el("td", {}, configOf(stateOf.get(d.id))),
          el(
            "td",
            {},
            el("button", { class: "link", onclick: () => act(`/devices/${d.id}` + query(scope()), "PATCH", { enabled: !d.enabled }) }, d.enabled ? "disable" : "enable"),
            " ",
            el("button", { class: "link", onclick: () => rotate(d.id) }, "rotate key"),
          ),
        ),
      ),
    );
    for (const picker of [$("sensor-device"), $("downlink-device")]) {
      const previous = picker.value;
      picker.replaceChildren(...devices.map((d) => el("option", { value: d.id }, d.id)));
      if (devices.some((d) => d.id === previous)) picker.value = previous;
    }
    return devices;
  }

  // The picked device's desired configuration and its latest commands.
  async function loadDownlink() {
    const device = $("downlink-device").value;
    if (!device) return;
    const [state, commands] = await Promise.all([
      api(`/devices/${device}/state` + query(scope())),
      api(`/devices/${device}/commands` + query({ ...scope(), limit: 20 })),
    ]);
    // A device without a desired configuration has none to fetch (the API would answer 404).
    const config = state.state.desired_config_version == null ? null : await api(`/devices/${device}/config` + query(scope()));
    const s = state.state;
    const last = state.last_reading;
    $("downlink-state").textContent =
      `${state.presence.replace("_", " ")}; firmware ${s.firmware || "unknown"}, boot ${s.boot ?? "–"}; ` +
      (last ? `newest reading seq ${last.seq} at ${new Date(last.ts).toISOString().replace("T", " ").slice(0, 19)}; ` : "") +
      (config ? `desired configuration v${config.version}, applied ${s.applied_config_version == null ? "none" : "v" + s.applied_config_version}` : "no desired configuration");
    const editor = $("config-form").elements.document;
    if (document.activeElement !== editor) editor.value = JSON.stringify(config ? config.document : {}, null, 1);
    $("command-rows").replaceChildren(
      ...commands.items.map((c) =>
        el(
          "tr",
          { "data-command": c.id, "data-status": c.status },
          el("td", {}, new Date(c.created_at).toISOString().replace("T", " ").slice(0, 19)),
          el("td", {}, c.name),
          el("td", { class: "detail" }, c.name === "rotate_key" ? "(sealed key)" : JSON.stringify(c.args)),
          el("td", {}, c.status),
          el("td", {}, c.detail || ""),
        ),
      ),
    );
  }

  async function loadSensors() {
    const device = $("sensor-device").value;
    if (!device) {
      $("sensor-rows").replaceChildren();
      return;
    }
    const sensors = (await api(`/devices/${device}/sensors` + query(scope()))).items;
    const range = (s) => `${s.valid_min ?? "−∞"} … ${s.valid_max ?? "∞"}`;
    $("sensor-rows").replaceChildren(
      ...sensors.map((s) =>
        el(
          "tr",
          { "data-sensor": s.sensor },
          el("td", {}, s.sensor),
          el("td", {}, s.kind),
          el("td", {}, s.unit),
          el("td", {}, s.scale),
          el("td", {}, s.offset),
          el("td", {}, range(s)),
          el("td", {}, el("button", { class: "link", onclick: () => act(`/devices/${device}/sensors/${s.sensor}` + query(scope()), "DELETE") }, "delete")),
        ),
      ),
    );
  }

  async function loadTokens() {
    const tokens = (await api("/tokens" + query(scope()))).items;
    $("token-rows").replaceChildren(
      ...tokens.map((t) =>
        el(
          "tr",
          {},
          el("td", {}, el("code", {}, t.id)),
          el("td", {}, t.company || "–"),
          el("td", {}, t.role),
          el("td", {}, t.name),
          el("td", {}, t.revoked_at ? "revoked" : "live"),
          el("td", {}, t.revoked_at || t.id === me.id ? "" : el("button", { class: "link", onclick: () => act(`/tokens/${t.id}`, "DELETE") }, "revoke")),
        ),
      ),
    );
  }

  // A company's alarm channels (deleted here) and its silences (ended here).
  async function loadNotifications() {
    const [channels, silences] = await Promise.all([
      api("/channels" + query(scope())),
      api("/silences" + query({ ...scope(), all: true })),
    ]);
    $("channel-rows").replaceChildren(
      ...channels.items.map((c) =>
        el(
          "tr",
          { "data-channel": c.id },
          el("td", {}, el("code", {}, c.id)),
          el("td", {}, c.kind === "webhook" && c.format !== "wenu" ? `webhook (${c.format})` : c.kind),
          el("td", {}, c.url),
          el("td", {}, [c.min_severity ? c.min_severity + "+" : "all", c.rules && c.rules.length ? "rules " + c.rules.join(",") : "", c.escalate_after_secs ? `escalates after ${c.escalate_after_secs} s` : ""].filter(Boolean).join("; ")),
          el("td", {}, el("button", { class: "link", onclick: () => act(`/channels/${c.id}` + query(scope()), "DELETE") }, "delete")),
        ),
      ),
    );
    const when = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 16);
    $("silence-rows").replaceChildren(
      ...silences.items.map((s) =>
        el(
          "tr",
          { "data-silence": s.id, "data-active": String(s.active) },
          el("td", {}, [s.device && "device " + s.device, s.site && "site " + s.site, s.rule && "rule " + s.rule].filter(Boolean).join(", ")),
          el("td", {}, `${when(s.starts_at)} → ${when(s.ends_at)}`),
          el("td", {}, s.reason),
          el("td", {}, s.created_by),
          el("td", {}, s.ends_at > Date.now() ? el("button", { class: "link", onclick: () => act(`/silences/${s.id}/end` + query(scope()), "POST") }, "end") : "ended"),
        ),
      ),
    );
  }

  async function loadAudit() {
    const entries = (await api("/audit" + query({ ...scope(), limit: 50 }))).items;
    $("audit-rows").replaceChildren(
      ...entries.map((e) =>
        el(
          "tr",
          {},
          el("td", {}, new Date(e.at).toISOString().replace("T", " ").slice(0, 19)),
          el("td", {}, e.actor),
          el("td", {}, e.action),
          el("td", {}, e.target),
          el("td", { class: "detail" }, JSON.stringify(e.detail)),
        ),
      ),
    );
  }

  async function act(path, method, body) {
    try {
      await api(path, { method, body });
      await refresh();
    } catch (error) {
      alert(error.message);
    }
  }

  async function rotate(device) {
    try {
      const rotated = await api(`/devices/${device}/rotate-key` + query(scope()), { method: "POST" });
      $("credentials").hidden = false;
      $("credentials").textContent = "New key for " + device + " (shown once):\n" + JSON.stringify(rotated, null, 2);
      await refresh();
    } catch (error) {
      alert(error.message);
    }
  }

  async function refresh() {
    try {
      await loadCompanies();
      if (!company) return;
      await loadSites();
      await loadDevices();
      await Promise.all([loadSensors(), loadDownlink(), loadNotifications(), loadTokens(), loadAudit()]);
    } catch (error) {
      showError($("audit-rows"), error);
    }
  }

  onSubmit($("company-form"), async ({ id }) => {
    await api("/companies", { method: "POST", body: { id } });
    company = id;
    return `Company ${id} created.`;
  });
  onSubmit($("site-form"), async ({ id, name }) => {
    await api(`/sites/${encodeURIComponent(id)}` + query(scope()), { method: "PUT", body: { name } });
    return `Site ${id} saved.`;
  });
  onSubmit($("provision-form"), async ({ count, site }) => {
    const created = await api("/devices" + query(scope()), { method: "POST", body: { count: Number(count), site: site || null } });
    $("credentials").hidden = false;
    $("credentials").textContent = "Credentials (shown once; put them on the devices):\n" + JSON.stringify(created.items, null, 2);
    return `${created.items.length} devices provisioned.`;
  });
  onSubmit($("sensor-form"), async (v) => {
    const device = $("sensor-device").value;
    if (!device) throw new Error("Pick a device first.");
    const body = {
      kind: v.kind,
      unit: v.unit,
      scale: numberOrNull(v.scale) ?? 1,
      offset: numberOrNull(v.offset) ?? 0,
      valid_min: numberOrNull(v.valid_min),
      valid_max: numberOrNull(v.valid_max),
    };
    await api(`/devices/${device}/sensors/${encodeURIComponent(v.sensor)}` + query(scope()), { method: "PUT", body });
    return `Sensor ${v.sensor} of ${device} saved.`;
  });
  onSubmit($("token-form"), async ({ role, name, rate_per_second }) => {
    const body = { role, name, rate_per_second: numberOrNull(rate_per_second) };
    if (operator && role !== "operator") body.company = company;
    const created = await api("/tokens", { method: "POST", body });
    $("new-token").hidden = false;
    $("new-token").textContent = "Token (shown once):\n" + created.bearer;
    return `Token ${created.token.id} created.`;
  });
  onSubmit($("config-form"), async ({ document: text }) => {
    const device = $("downlink-device").value;
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error("The configuration is not JSON.");
    }
    const saved = await api(`/devices/${device}/config` + query(scope()), { method: "PUT", body });
    return `Configuration v${saved.version} of ${device} saved.`;
  });
  onSubmit($("command-form"), async ({ name, args, ttl_secs }) => {
    const device = $("downlink-device").value;
    let parsed;
    try {
      parsed = JSON.parse(args || "{}");
    } catch {
      throw new Error("The arguments are not JSON.");
    }
    const body = { name, args: parsed, ttl_secs: numberOrNull(ttl_secs) };
    const sent = await api(`/devices/${device}/commands` + query(scope()), { method: "POST", body });
    return `Command ${sent.name} queued for ${device} (${sent.id}).`;
  });
  $("sensor-device").addEventListener("change", () => loadSensors().catch((e) => alert(e.message)));
  $("downlink-device").addEventListener("change", () => loadDownlink().catch((e) => alert(e.message)));

  await refresh();
  document.body.dataset.ready = "true";
})();
