/**
 * The dashboard's script (inlined into the page by `dashboard.ts`, allowed by its hash in the
 * page's Content-Security-Policy). Plain browser JavaScript, no framework and no build step:
 * it reads `/status` and `/apps`, follows `/events` (fetch streaming, so the token, when it has
 * one, travels in a header), renders the agent and one card per app, and re-reads the state after
 * each event. Actions (reconcile, hot reload) and logs ask for the API token on a 401, once per
 * tab (kept in sessionStorage only). Text only ever reaches the page through `textContent`.
 */
import { DASHBOARD_LIVE } from "./_dashboard-live.ts";

/** The page and its cards: helpers, rendering, the token dialog, actions, start-up. */
const VIEW = String.raw`
  var TOKEN_KEY = "bc-gitops-token";
  var MAX_EVENTS = 20;
  var MAX_LOG_LINES = 500;
  // The API is next to the page: "/" and "/ui" on the agent, "/gitops/" when a program mounts it there.
  var base = location.pathname.replace(/ui\/?$/, "").replace(/[^/]*$/, "");
  var body = document.body;
  var state = { status: null, apps: [], events: {}, cards: new Map(), live: false, lastEventId: null };
  var $ = function (id) {
    return document.getElementById(id);
  };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs)
      Object.keys(attrs).forEach(function (key) {
        if (key === "text") node.textContent = attrs[key];
        else if (key === "class") node.className = attrs[key];
        else node.setAttribute(key, attrs[key]);
      });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(child);
    });
    return node;
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      return null;
    }
  }

  function headers(extra) {
    var h = Object.assign({ accept: "application/json" }, extra || {});
    var t = token();
    if (t) h.authorization = "Bearer " + t;
    return h;
  }

  function notice(text, kind) {
    var n = $("notice");
    n.textContent = text || "";
    n.setAttribute("data-kind", kind || "info");
  }

  // ---- time and numbers -------------------------------------------------------------------
  function span(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min";
    var h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }
  function ago(iso) {
    if (!iso) return "never";
    var t = Date.parse(iso);
    return isNaN(t) ? "?" : span(Date.now() - t) + " ago";
  }
  function clock(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? "" : d.toLocaleTimeString();
  }
  function sentence(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }
  function short(rev) {
    return rev ? String(rev).slice(0, 12) : "none";
  }

  // ---- words and tones (status is always a word; colour repeats it) ----------------------
  function tone(word) {
    if (word === "synced" || word === "running" || word === "healthy") return "ok";
    if (word === "failed" || word === "unhealthy" || word === "error" || word === "degraded") return "bad";
    return "warn";
  }
  function word(text) {
    return el("span", { class: "word", "data-tone": tone(text), text: text });
  }

  // ---- API ------------------------------------------------------------------------------
  async function getJson(path) {
    var res = await fetch(base + path, { headers: headers(), cache: "no-store" });
    if (!res.ok) throw new Error(path + ": " + res.status + " " + (await errorOf(res)));
    return res.json();
  }
  async function errorOf(res) {
    try {
      var body = await res.json();
      return body && body.error ? body.error : res.statusText;
    } catch (e) {
      return res.statusText;
    }
  }

  /** Sends a request that needs the token; asks for it (once per tab) when the agent says 401. */
  async function authorized(path, init) {
    for (var attempt = 0; attempt < 3; attempt++) {
      var res = await fetch(base + path, Object.assign({ cache: "no-store" }, init, { headers: headers(init && init.headers) }));
      if (res.status !== 401) return res;
      var had = token();
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch (e) {}
      var given = await askToken(had ? "The agent refused that token. Enter the API token:" : "This agent needs its API token:");
      if (!given) return null;
    }
    return null;
  }

  var asking = null;
  function askToken(message) {
    // One dialog at a time: a second request that needs the token waits for the same answer.
    if (asking) return asking;
    asking = new Promise(function (resolve) {
      var dialog = $("token-dialog");
      var input = $("token-input");
      $("token-message").textContent = message;
      input.value = "";
      function done() {
        dialog.removeEventListener("close", done);
        var value = dialog.returnValue === "ok" ? input.value.trim() : "";
        input.value = "";
        if (value) {
          try {
            sessionStorage.setItem(TOKEN_KEY, value);
          } catch (e) {}
        }
        asking = null;
        resolve(value || null);
      }
      dialog.addEventListener("close", done);
      dialog.returnValue = "";
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  // ---- rendering ------------------------------------------------------------------------
  function renderAgent() {
    var s = state.status;
    if (!s) return;
    var st = $("agent-status");
    st.textContent = "";
    st.appendChild(word(s.status));
    $("agent-commit").textContent = s.last_commit
      ? short(s.last_commit) + (s.last_commit_at ? " (committed " + ago(s.last_commit_at) + ")" : "")
      : "none yet";
    var r = s.last_reconcile || {};
    $("agent-reconcile").textContent = r.at
      ? ago(r.at) + (r.duration_ms !== null && r.duration_ms !== undefined ? ", " + r.duration_ms + " ms" : "")
      : "not yet";
    $("agent-apps").textContent = s.healthy_count + "/" + s.app_count + " healthy";
    var errors = $("errors");
    var list = $("error-list");
    list.textContent = "";
    (s.errors || []).forEach(function (e) {
      var where = e.app ? e.app + ": " : e.file ? e.file + (e.line ? ":" + e.line : "") + " " : "";
      list.appendChild(el("li", { text: where + e.message }));
    });
    errors.hidden = !(s.errors && s.errors.length);
  }

  function iconOf(app) {
    var icon = app.icon;
    // Only data: icons are drawn: the page makes no request to another site (a url icon shows its initial).
    if (icon && typeof icon.value === "string" && icon.value.indexOf("data:") === 0) {
      return el("img", { class: "icon", src: icon.value, alt: "", width: "40", height: "40" });
    }
    if (icon && icon.type === "base64" && icon.value) {
      return el("img", { class: "icon", src: "data:" + (icon.mime_type || "image/png") + ";base64," + icon.value, alt: "", width: "40", height: "40" });
    }
    return el("span", { class: "icon", "aria-hidden": "true", text: app.name.slice(0, 1).toUpperCase() });
  }

  function fact(dl, name, value) {
    dl.appendChild(el("dt", { text: name }));
    var dd = el("dd");
    if (value instanceof Node) dd.appendChild(value);
    else dd.textContent = value;
    dl.appendChild(dd);
  }

  function appTone(app) {
    if (app.status === "failed" || app.health === "unhealthy") return "bad";
    if (app.status === "running" && app.health === "healthy") return "ok";
    return "warn";
  }

  function cardFor(app) {
    var card = state.cards.get(app.name);
    if (card) return card;
    var id = "app-" + app.name.replace(/[^A-Za-z0-9_-]/g, "_");
    var reload = el("button", { type: "button", class: "reload", text: "Hot reload" });
    reload.setAttribute("aria-label", "Hot reload " + app.name);
    reload.addEventListener("click", function () {
      hotReload(app.name, reload);
    });
    var details = el("details", { class: "more" }, [
      el("summary", { text: "Recent events and log" }),
      el("h3", { text: "Recent events" }),
      el("ol", { class: "events" }),
      el("h3", { text: "Log" }),
      el("pre", { class: "log", tabindex: "0", "aria-label": "Log of " + app.name }),
    ]);
    card = {
      root: el("li", { class: "app", id: id, "data-app": app.name }),
      head: el("div", { class: "app-head" }),
      description: el("p", { class: "description" }),
      facts: el("dl", { class: "facts" }),
      why: el("div"),
      actions: el("div", { class: "actions" }, [reload]),
      details: details,
      events: details.querySelector(".events"),
      log: details.querySelector(".log"),
      follow: null,
    };
    card.root.appendChild(card.head);
    card.root.appendChild(card.description);
    card.root.appendChild(card.facts);
    card.root.appendChild(card.why);
    card.root.appendChild(card.actions);
    card.root.appendChild(details);
    details.addEventListener("toggle", function () {
      if (details.open) followLog(app.name, card);
      else if (card.follow) {
        card.follow.abort();
        card.follow = null;
      }
    });
    state.cards.set(app.name, card);
    return card;
  }

  function renderApp(app) {
    var card = cardFor(app);
    card.root.setAttribute("data-tone", appTone(app));
    card.root.setAttribute("data-status", app.status);
    card.head.textContent = "";
    card.head.appendChild(iconOf(app));
    card.head.appendChild(el("h2", { text: app.name }));
    card.head.appendChild(el("span", { class: "version", text: app.version || "" }));
    card.description.textContent = app.description || "";
    card.description.hidden = !app.description;
    card.facts.textContent = "";
    fact(card.facts, "status", word(app.status));
    fact(card.facts, "health", word(app.health));
    fact(card.facts, "isolation", app.isolation || "embedded");
    fact(card.facts, "revision", short(app.revision));
    fact(card.facts, "uptime", app.status === "running" && app.started_at ? span(Date.now() - Date.parse(app.started_at)) : "-");
    fact(card.facts, "restarts", String(app.restarts || 0));
    fact(card.facts, "reloads", String(app.reloads || 0));
    fact(card.facts, "memory", typeof app.memory_mb === "number" ? app.memory_mb.toFixed(1) + " MB" : "-");
    card.why.textContent = "";
    if (app.pending_reason) card.why.appendChild(el("p", { class: "why", "data-kind": "wait", text: sentence(app.pending_reason) }));
    if (app.retry_at)
      card.why.appendChild(el("p", { class: "why", "data-kind": "wait", text: "Backing off: next try " + (Date.parse(app.retry_at) > Date.now() ? "in " + span(Date.parse(app.retry_at) - Date.now()) : "now") }));
    if (app.stalled) card.why.appendChild(el("p", { class: "why", "data-kind": "wait", text: "Waiting for a new commit: retrying cannot help" }));
    if (app.last_error) card.why.appendChild(el("p", { class: "why", "data-kind": "error", text: "Last error: " + app.last_error }));
    renderEvents(app.name);
    return card.root;
  }

  function renderApps() {
    var list = $("apps");
    var seen = new Set();
    state.apps.forEach(function (app, index) {
      seen.add(app.name);
      var node = renderApp(app);
      if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
    });
    state.cards.forEach(function (card, name) {
      if (seen.has(name)) return;
      if (card.follow) card.follow.abort();
      card.root.remove();
      state.cards.delete(name);
    });
    $("no-apps").hidden = state.apps.length > 0;
  }

  function renderEvents(name) {
    var card = state.cards.get(name);
    if (!card) return;
    var events = state.events[name] || [];
    card.events.textContent = "";
    if (events.length === 0) card.events.appendChild(el("li", { class: "empty", text: "No events since this page opened." }));
    events
      .slice()
      .reverse()
      .forEach(function (e) {
        var m = e.metadata || {};
        var change = m.to_version ? " " + (m.from_version || "?") + " -> " + m.to_version : m.to ? " " + m.from + " -> " + m.to : "";
        var what = e.area + ":" + e.phase + change + (e.duration_ms !== undefined ? " (" + e.duration_ms + " ms)" : "") + (e.error ? " - " + e.error : "");
        card.events.appendChild(el("li", {}, [el("time", { datetime: e.at, text: clock(e.at) }), document.createTextNode(what)]));
      });
  }

  // ---- actions --------------------------------------------------------------------------
  async function act(button, path, what) {
    button.disabled = true;
    notice(what + "…");
    try {
      var res = await authorized(path, { method: "POST" });
      if (!res) {
        notice(what + ": cancelled (the agent needs its API token)", "error");
        return;
      }
      if (!res.ok) {
        notice(what + " refused: " + res.status + " " + (await errorOf(res)), "error");
        return null;
      }
      return await res.json();
    } catch (e) {
      notice(what + " failed: " + e.message, "error");
      return null;
    } finally {
      button.disabled = false;
      refreshSoon();
    }
  }

  async function reconcile() {
    var result = await act($("reconcile"), "reconcile", "Reconcile");
    if (!result) return;
    var failed = (result.actions || []).filter(function (a) {
      return a.outcome === "failed";
    });
    notice(
      "Reconciled: " + result.status + ", " + (result.actions || []).length + " action(s)" + (failed.length ? ", " + failed.length + " failed" : "") + " in " + result.duration_ms + " ms",
      failed.length || result.status === "error" ? "error" : "info",
    );
  }

  async function hotReload(name, button) {
    var result = await act(button, "apps/" + encodeURIComponent(name) + "/reload", "Hot reload of " + name);
    if (!result) return;
    notice(result.modules && result.modules.length ? "Reloaded " + name + ": " + result.modules.join(", ") : name + ": nothing changed, nothing reloaded");
  }

`;

/** Start-up, once every function and variable of both parts is defined. */
const START = String.raw`
  $("reconcile").addEventListener("click", reconcile);
  $("token-cancel").addEventListener("click", function () {
    $("token-dialog").close("cancel");
  });
  setLive(false);
  refresh();
  streamEvents();
  // Ages and uptimes move on between events.
  setInterval(function () {
    renderAgent();
    state.apps.forEach(renderApp);
  }, 5000);
  setInterval(refresh, 30000);
`;

/** The whole script: one strict function scope around the view, the live part and the start-up. */
export const DASHBOARD_SCRIPT = '"use strict";\n(function () {' + VIEW + DASHBOARD_LIVE + START + "})();\n";
