// The alarm panel's notification settings: the company's silences (in
// force and coming; admins add and end them) and, for admins, its channels
// (webhooks, Slack, Teams, e-mail) with their routing and a test button.
"use strict";

const WenuNotify = (() => {
  const { api, el, query, showError } = Wenu;

  function when(ms) {
    return new Date(ms).toLocaleString();
  }

  function scopeText(s) {
    return [["device", s.device], ["site", s.site], ["rule", s.rule]]
      .filter(([, v]) => v)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
  }

  function routeText(c) {
    const parts = [];
    parts.push(c.min_severity ? c.min_severity + " and worse" : "every severity");
    if (c.rules && c.rules.length) parts.push("rules " + c.rules.join(", "));
    if (c.escalate_after_secs) parts.push(`escalation after ${Math.round(c.escalate_after_secs / 60)} min unacknowledged`);
    return parts.join("; ");
  }

  async function loadSilences(scope, canManage) {
    const rows = document.getElementById("silence-rows");
    const { items } = await api("/silences" + query(scope));
    document.getElementById("silence-count").textContent = String(items.filter((s) => s.active).length);
    rows.replaceChildren(
      ...items.map((s) => {
        const end = canManage ? el("button", { type: "button", class: "end-silence" }, "End now") : "";
        if (end) {
          end.addEventListener("click", async () => {
            await api(`/silences/${s.id}/end` + query(scope), { method: "POST" }).catch((e) => showError(rows, e));
            await loadSilences(scope, canManage);
          });
        }
        return el("tr", { "data-silence": s.id, class: s.active ? "active" : "coming" }, [
          el("td", {}, scopeText(s)),
          el("td", {}, `${when(s.starts_at)} → ${when(s.ends_at)}`),
          el("td", {}, s.reason),
          el("td", {}, s.created_by),
          el("td", {}, end),
        ]);
      }),
    );
  }

  async function loadChannels(scope) {
    const rows = document.getElementById("channel-rows");
    const { items } = await api("/channels" + query(scope));
    rows.replaceChildren(
      ...items.map((c) => {
        const test = el("button", { type: "button", class: "test-channel" }, "Send test");
        const outcome = el("span", { class: "muted test-outcome" });
        test.addEventListener("click", async () => {
          outcome.textContent = "sending…";
          try {
            const r = await api(`/channels/${c.id}/test` + query(scope), { method: "POST" });
            outcome.textContent = r.delivered ? "delivered" : "not delivered: " + r.error;
          } catch (error) {
            outcome.textContent = String(error.message || error);
          }
        });
        const label = c.kind === "webhook" && c.format !== "wenu" ? `${c.kind} (${c.format})` : c.kind;
        return el("tr", { "data-channel": c.id }, [
          el("td", {}, label),
          el("td", {}, c.url),
          el("td", {}, routeText(c)),
          el("td", {}, test, " ", outcome),
        ]);
      }),
    );
  }

  function formValues(form) {
    const values = {};
    for (const [key, value] of new FormData(form)) if (String(value).trim() !== "") values[key] = String(value).trim();
    return values;
  }

  function wireForms(scope, canManage) {
    const silenceForm = document.getElementById("silence-form");
    const channelForm = document.getElementById("channel-form");
    silenceForm.hidden = !canManage;
    document.getElementById("channels").hidden = !canManage;
    if (!canManage) return;
    silenceForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const v = formValues(silenceForm);
      const body = { reason: v.reason || "", duration_secs: Math.round(Number(v.hours || 0) * 3600) };
      for (const key of ["device", "site", "rule"]) if (v[key]) body[key] = v[key];
      try {
        await api("/silences" + query(scope), { method: "POST", body });
        silenceForm.reset();
        document.getElementById("notify-error").replaceChildren();
        await loadSilences(scope, canManage);
      } catch (error) {
        showError(document.getElementById("notify-error"), error);
      }
    });
    channelForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const v = formValues(channelForm);
      const body = { url: v.url || "", format: v.format || "wenu" };
      if (v.min_severity) body.min_severity = v.min_severity;
      if (v.escalate_after_min) body.escalate_after_secs = Math.round(Number(v.escalate_after_min) * 60);
      try {
        const made = await api("/channels" + query(scope), { method: "POST", body });
        channelForm.reset();
        document.getElementById("notify-error").replaceChildren();
        document.getElementById("channel-secret").textContent =
          made.kind === "webhook" ? `Signing secret (shown once): ${made.secret}` : "";
        await loadChannels(scope);
      } catch (error) {
        showError(document.getElementById("notify-error"), error);
      }
    });
  }

  async function start(scope, role) {
    const canManage = role !== "viewer";
    wireForms(scope, canManage);
    await loadSilences(scope, canManage);
    if (canManage) await loadChannels(scope);
  }

  return { start };
})();
