// The dashboard's fleet panel: how many devices are online, silent, offline
// or never seen and how many run a stale configuration, one row per device
// (problems first) with its last contact, firmware, boot and configuration,
// and a presence mark beside each device in the tree.
"use strict";

const WenuFleet = (() => {
  const { api, el, query } = Wenu;
  const ORDER = { silent: 0, offline: 1, never_seen: 2, online: 3 };
  const LABEL = { online: "online", silent: "silent", offline: "offline", never_seen: "never seen" };
  const MAX_ROWS = 500;

  function ago(ms, now) {
    if (!ms) return "never";
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 129600) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function configText(d) {
    if (d.desired_config_version == null) return d.applied_config_version == null ? "–" : "v" + d.applied_config_version;
    const applied = d.applied_config_version == null ? "none" : "v" + d.applied_config_version;
    return d.config_stale ? `${applied} (wants v${d.desired_config_version})` : applied;
  }

  function render(fleet, onPick) {
    const c = fleet.counts;
    const summary = document.getElementById("fleet-summary");
    summary.replaceChildren(
      ...["online", "silent", "offline", "never_seen"].map((p) =>
        el("span", { class: "presence presence-" + p, "data-count": p }, `${c[p]} ${LABEL[p]}`),
      ),
      el("span", { class: "presence" + (c.config_stale ? " stale" : ""), "data-count": "config_stale" }, `${c.config_stale} stale configuration`),
    );
    const rows = [...fleet.items].sort(
      (a, b) => ORDER[a.presence] - ORDER[b.presence] || b.config_stale - a.config_stale || a.device_id.localeCompare(b.device_id),
    );
    document.getElementById("fleet-rows").replaceChildren(
      ...rows.slice(0, MAX_ROWS).map((d) => {
        const link = el("a", { href: "#device=" + encodeURIComponent(d.device_id) }, d.device_id);
        link.addEventListener("click", () => onPick(d.device_id));
        const heard = Math.max(d.last_seen_at || 0, d.connected_at || 0);
        return el("tr", { "data-device": d.device_id, "data-presence": d.presence, class: d.config_stale ? "stale" : "" }, [
          el("td", {}, link),
          el("td", {}, el("span", { class: "presence presence-" + d.presence }, LABEL[d.presence])),
          el("td", { title: heard ? new Date(heard).toISOString() : "" }, ago(heard, fleet.at)),
          el("td", {}, d.firmware || "–"),
          el("td", {}, d.boot ?? "–"),
          el("td", { class: "config" }, configText(d)),
        ]);
      }),
    );
    const more = rows.length - MAX_ROWS;
    document.getElementById("fleet-more").textContent = more > 0 ? `and ${more} more` : "";
    last = fleet;
    markTree();
  }

  let last = null;

  // Marks each device of the tree with its presence (again after the tree is rebuilt).
  function markTree() {
    if (!last) return;
    const presence = new Map(last.items.map((d) => [d.device_id, d.presence]));
    for (const a of document.querySelectorAll("a.device")) a.dataset.presence = presence.get(a.dataset.device) || "";
  }

  // Loads the panel now and every 15 s; resolves after the first load.
  async function start(scope, onPick) {
    const load = async () => render(await api("/fleet" + query(scope)), onPick);
    setInterval(() => load().catch(() => {}), 15000);
    return load();
  }

  return { start, markTree };
})();
