// Shared by the dashboard and the backoffice: the API token, API calls,
// small DOM helpers and the live event stream. No framework, no build step.
"use strict";

const Wenu = (() => {
  const TOKEN_KEY = "wenu.token";

  // A token can arrive in the URL fragment (#token=…), which browsers never
  // send to the server; it is moved to this tab's session storage at once.
  function takeTokenFromFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    const token = params.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + token(), ...(options.headers || {}) };
    let body = options.body;
    if (body !== undefined && typeof body !== "string") {
      body = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const response = await fetch("/api/v1" + path, { method: options.method || "GET", headers, body });
    if (response.status === 204) return null;
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = payload.error || {};
      throw new ApiError(response.status, error.code || "http_" + response.status, error.message || response.statusText);
    }
    return payload;
  }

  // el("div", {class: "x", onclick: f}, child, "text", …)
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "value") node.value = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function query(params) {
    const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
    return entries.length ? "?" + new URLSearchParams(entries).toString() : "";
  }

  function formatValue(value) {
    if (value === null || value === undefined) return "–";
    const abs = Math.abs(value);
    return abs >= 1000 || abs === 0 ? value.toFixed(0) : value.toPrecision(4);
  }

  function showError(target, error) {
    target.replaceChildren(el("p", { class: "error", role: "alert" }, error.message || String(error)));
  }

  // The login form shown when there is no token or it is refused.
  function loginForm(container, message) {
    const input = el("input", { type: "password", name: "token", placeholder: "wenu_…", autocomplete: "off", size: 60 });
    container.replaceChildren(
      el(
        "form",
        {
          class: "card login",
          onsubmit: (event) => {
            event.preventDefault();
            sessionStorage.setItem(TOKEN_KEY, input.value.trim());
            location.reload();
          },
        },
        el("h2", {}, "Sign in with an API token"),
        message ? el("p", { class: "error" }, message) : null,
        el("p", { class: "muted" }, "Create one with ", el("code", {}, "wenu tokens create --company ACME --role viewer"), "."),
        input,
        el("button", { type: "submit" }, "Sign in"),
      ),
    );
  }

  // Who the token is, or null after showing the login form; wires "Sign out".
  async function whoAmI(container) {
    takeTokenFromFragment();
    document.getElementById("sign-out")?.addEventListener("click", (event) => {
      event.preventDefault();
      signOut();
    });
    if (!token()) {
      loginForm(container);
      return null;
    }
    try {
      return await api("/me");
    } catch (error) {
      loginForm(container, error.status === 401 ? "That token is not valid (or was revoked)." : error.message);
      return null;
    }
  }

  // Server-sent events read with fetch, so the token goes in a header and
  // never in a URL. Calls onEvent(name, data) per event; reconnects.
  function subscribe(path, onEvent, onState) {
    let stopped = false;
    const controller = new AbortController();
    (async function run() {
      while (!stopped) {
        try {
          const response = await fetch("/api/v1" + path, {
            headers: { Authorization: "Bearer " + token(), Accept: "text/event-stream" },
            signal: controller.signal,
          });
          if (!response.ok) throw new Error("live stream: HTTP " + response.status);
          onState && onState("live");
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              let name = "message";
              const data = [];
              for (const line of block.split("\n")) {
                if (line.startsWith("event:")) name = line.slice(6).trim();
                else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
              }
              if (data.length) onEvent(name, JSON.parse(data.join("\n")));
            }
          }
        } catch (error) {
          if (stopped) return;
          onState && onState("reconnecting");
        }
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    })();
    return () => {
      stopped = true;
      controller.abort();
    };
  }

  return { api, el, query, formatValue, showError, whoAmI, subscribe, signOut, ApiError };
})();
