/**
 * The dashboard script's live part (see `_dashboard-script.ts`, which wraps both parts in one
 * function scope): re-reading `/status` and `/apps`, a Server-Sent Events reader over `fetch`
 * (so the token, when needed, is a header and never part of a URL), the `/events` stream with its
 * reconnection from `Last-Event-ID`, and following an app's log while its card is open.
 */
export const DASHBOARD_LIVE = String.raw`
  // ---- refresh --------------------------------------------------------------------------
  var refreshing = null;
  var again = false;
  function refresh() {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = Promise.all([getJson("status"), getJson("apps")])
      .then(function (answers) {
        state.status = answers[0];
        state.apps = answers[1].apps || [];
        renderAgent();
        renderApps();
        body.setAttribute("data-loaded", "yes");
      })
      .catch(function (e) {
        notice("Cannot read the agent's status: " + e.message, "error");
      })
      .finally(function () {
        refreshing = null;
        if (again) {
          again = false;
          setTimeout(refresh, 100);
        }
      });
    return refreshing;
  }
  var scheduled = null;
  function refreshSoon() {
    if (scheduled) return;
    scheduled = setTimeout(function () {
      scheduled = null;
      refresh();
    }, 150);
  }

  // ---- Server-Sent Events over fetch (the token goes in a header, never in the URL) --------
  async function readEvents(res, onMessage, signal) {
    var reader = res.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var message = { data: [] };
    while (!signal || !signal.aborted) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      var lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      lines.forEach(function (line) {
        if (line === "") {
          if (message.data.length) onMessage({ id: message.id, event: message.event || "message", data: message.data.join("\n") });
          message = { data: [] };
          return;
        }
        if (line.charAt(0) === ":") return;
        var colon = line.indexOf(":");
        var field = colon < 0 ? line : line.slice(0, colon);
        var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") message.data.push(value);
        else if (field === "id") message.id = value;
        else if (field === "event") message.event = value;
      });
    }
    try {
      reader.cancel();
    } catch (e) {}
  }

  function setLive(live) {
    state.live = live;
    var n = $("live");
    n.setAttribute("data-live", live ? "yes" : "no");
    n.textContent = live ? "live" : "reconnecting…";
  }

  function onEvent(message) {
    if (message.id) state.lastEventId = message.id;
    if (message.event !== "message") return;
    var event;
    try {
      event = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    if (event.app && event.name !== "bc_gitops:health:check") {
      var list = state.events[event.app] || (state.events[event.app] = []);
      list.push(event);
      if (list.length > MAX_EVENTS) list.splice(0, list.length - MAX_EVENTS);
      renderEvents(event.app);
    }
    refreshSoon();
  }

  async function streamEvents() {
    for (;;) {
      try {
        var h = headers({ accept: "text/event-stream" });
        if (state.lastEventId) h["last-event-id"] = state.lastEventId;
        var res = await fetch(base + "events?backlog=200", { headers: h, cache: "no-store" });
        if (!res.ok) throw new Error("events: " + res.status);
        setLive(true);
        refreshSoon();
        await readEvents(res, onEvent);
      } catch (e) {}
      setLive(false);
      await new Promise(function (resolve) {
        setTimeout(resolve, 2000);
      });
    }
  }

  async function followLog(name, card) {
    if (card.follow) card.follow.abort();
    var controller = new AbortController();
    card.follow = controller;
    card.log.textContent = "";
    var lines = [];
    try {
      var res = await authorized("apps/" + encodeURIComponent(name) + "/logs?lines=100&follow=1", {
        headers: { accept: "text/event-stream" },
        signal: controller.signal,
      });
      if (!res) {
        card.log.textContent = "The log needs the API token.";
        return;
      }
      if (!res.ok) {
        card.log.textContent = "Cannot read the log: " + (await errorOf(res));
        return;
      }
      card.log.textContent = "(no lines yet)";
      await readEvents(
        res,
        function (message) {
          try {
            lines.push(JSON.parse(message.data).line);
          } catch (e) {
            return;
          }
          if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
          var atEnd = card.log.scrollTop + card.log.clientHeight >= card.log.scrollHeight - 4;
          card.log.textContent = lines.join("\n");
          if (atEnd) card.log.scrollTop = card.log.scrollHeight;
        },
        controller.signal,
      );
    } catch (e) {
      if (!controller.signal.aborted) card.log.textContent = (lines.length ? lines.join("\n") + "\n" : "") + "(log stream ended)";
    }
  }

`;
