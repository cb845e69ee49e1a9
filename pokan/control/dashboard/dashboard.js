// pokan dashboard: reads this node's control API (/v1/...) and its event
// stream. Plain JavaScript, no build step, nothing fetched from elsewhere.
// Every value shown comes from the cluster (untrusted): it is only ever set
// as text (textContent), never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "pokan.controlToken";
  const POLL_MS = 2000; // /v1/info and /v1/members
  const KEYS_EVERY_MS = 10000; // /v1/keys, besides after each key event
  const KEY_EVENT_DELAY_MS = 150; // a burst of key events: one refresh
  const FEED_MAX = 200; // events kept on the page
  const PAGE_LIMIT = 1000; // the API's largest page
  const MAX_PAGES = 20; // so at most 20,000 keys or members are shown
  const VALUE_SHOWN = 300; // characters of a value shown before cutting
  const RETRY_MAX_MS = 15000;

  const KEY_EVENTS = new Set(["new_key", "key_changed", "key_removed"]);
  // what the feed follows: not before_/after_gossip, which come every round.
  // The server writes the list into the page (pokan.control.feed.FEED_EVENTS,
  // which a bare `pokan watch` follows too).
  const FOLLOWED = (document.getElementById("events")?.dataset.follow || "")
    .split(/\s+/).filter(Boolean);
  const PEER_EVENTS = new Set(["peer_joined", "peer_left", "peer_dead", "peer_alive"]);

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    previous: null, // {at, sent, received, bytes} of the last /v1/info
    keysTimer: null,
    pollTimer: null,
    keysPoll: null,
    stream: null, // AbortController of the event stream
    retryMs: 1000,
    stopped: false,
  };

  class Unauthorized extends Error {}

  // -- the API --------------------------------------------------------------

  function headers(accept) {
    const h = { Accept: accept };
    if (state.token) h.Authorization = "Bearer " + state.token;
    return h;
  }

  function url(path) {
    // Relative to the page, so the dashboard also works behind a path prefix.
    return new URL(path, document.baseURI);
  }

  async function api(path, okStatuses = []) {
    const resp = await fetch(url(path), {
      headers: headers("application/json"),
      cache: "no-store",
    });
    if (resp.status === 401) throw new Unauthorized(await errorText(resp));
    const body = await resp.json().catch(() => null);
    if (!resp.ok && !okStatuses.includes(resp.status)) {
      const why = body && typeof body.error === "string" ? body.error : resp.statusText;
      throw new Error(`${path}: ${resp.status} ${why}`);
    }
    return { status: resp.status, body: body || {} };
  }

  async function errorText(resp) {
    const body = await resp.json().catch(() => null);
    return body && typeof body.error === "string" ? body.error : "unauthorized";
  }

  // Every item of a paged list endpoint, at most MAX_PAGES pages.
  async function allPages(path, field) {
    const items = [];
    let after = null;
    for (let page = 0; page < MAX_PAGES; page++) {
      let query = `?limit=${PAGE_LIMIT}`;
      if (after !== null) query += "&after=" + encodeURIComponent(after);
      const { body } = await api(path + query);
      const got = Array.isArray(body[field]) ? body[field] : [];
      items.push(...got);
      after = body.next === undefined ? null : body.next;
      if (after === null || got.length === 0) return { items, more: false };
    }
    return { items, more: true };
  }

  // -- small formatting helpers -------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  // A table cell; its content in one span, so the phone layout (label and
  // content side by side) has two parts whatever the content is.
  function cell(label, ...children) {
    return el("td", { "data-label": label }, el("span", { class: "cell" }, ...children));
  }

  function plural(n, word) {
    return `${number(n)} ${word}${n === 1 ? "" : "s"}`;
  }

  function number(n) {
    return typeof n === "number" && Number.isFinite(n) ? n.toLocaleString("en") : "—";
  }

  function bytes(n) {
    if (typeof n !== "number" || !Number.isFinite(n)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + " " + units[i];
  }

  function clock(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "—";
    return new Date(seconds * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }

  function stamp(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "—";
    return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function ago(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "—";
    if (seconds < 10) return seconds.toFixed(1) + " s ago";
    if (seconds < 3600) return Math.round(seconds) + " s ago";
    return (seconds / 3600).toFixed(1) + " h ago";
  }

  // A value as text: str as is, bytes as base64 with a marker; long ones cut.
  function valueCell(type, value) {
    const isBytes = type === "bytes";
    const text = typeof value === "string" ? value : JSON.stringify(value);
    const shown = text.length > VALUE_SHOWN ? text.slice(0, VALUE_SHOWN) : text;
    const parts = [el("span", { class: "value", text: shown })];
    if (shown !== text) {
      parts.push(el("span", { class: "cut", text: ` … ${text.length - shown.length} more characters` }));
    }
    const marker = el("span", {
      class: isBytes ? "type-bytes" : "type-str",
      text: isBytes ? "bytes · base64" : "str",
    });
    return { parts, marker };
  }

  function showProblem(message) {
    const box = $("problem");
    box.hidden = !message;
    box.textContent = message || "";
  }

  // -- status of a member -----------------------------------------------------

  function statusOf(member) {
    const status = ["alive", "dead", "left"].includes(member.status) ? member.status : "unknown";
    const detector = member.detector || {};
    if (status === "alive" && detector.suspect === true) return { css: "suspect", text: "alive, suspect" };
    return { css: status, text: status === "unknown" ? String(member.status) : status };
  }

  function detectorText(detector) {
    if (!detector || typeof detector !== "object") return "—";
    const parts = [];
    for (const [name, value] of Object.entries(detector)) {
      if (name === "kind") continue;
      const shown = typeof value === "number" && !Number.isInteger(value) ? value.toFixed(2) : String(value);
      parts.push(`${name} ${shown}`);
    }
    // {"kind":"phi","phi":0.3} reads "phi 0.30"; the kind is named when no field says it
    const kind = typeof detector.kind === "string" && !(detector.kind in detector && parts.length) ? detector.kind : "";
    const text = [kind, parts.join(", ")].filter(Boolean).join(": ");
    return text || "—";
  }

  // -- rendering --------------------------------------------------------------

  function renderInfo(info) {
    $("node-id").textContent = String(info.id ?? "?");
    const where = `${info.address ?? "?"} · udp ${info.udp_port ?? "?"} · tcp ${info.tcp_port ?? "?"}`;
    const cluster = info.cluster ? ` · cluster ${info.cluster}` : "";
    const sealed = info.sealed ? " · sealed" : "";
    const version = info.version ? ` · pokan ${info.version}` : "";
    $("node-line").textContent = where + cluster + sealed + ` · generation ${info.generation ?? "?"}` + version;
    document.title = `pokan ${info.id ?? ""}`;

    const counters = info.counters || {};
    const now = performance.now();
    const sample = {
      at: now,
      messages: (counters.datagrams_sent || 0) + (counters.datagrams_received || 0),
      bytes: counters.bytes_sent || 0,
    };
    const before = state.previous;
    if (before && now > before.at) {
      const seconds = (now - before.at) / 1000;
      const rate = Math.max(0, sample.messages - before.messages) / seconds;
      const byteRate = Math.max(0, sample.bytes - before.bytes) / seconds;
      $("fig-rate").textContent = rate.toFixed(1);
      $("fig-byte-rate").textContent = bytes(byteRate) + "/s";
    }
    state.previous = sample;
    $("fig-bytes").textContent = bytes(counters.bytes_sent);
    $("fig-dropped").textContent = number(counters.dropped);
  }

  function renderMembers(members, more) {
    members.sort((a, b) => (b.me === true) - (a.me === true) || String(a.id).localeCompare(String(b.id)));
    const counts = { alive: 0, dead: 0, left: 0 };
    const rows = members.map((m) => {
      const status = statusOf(m);
      if (!m.me && m.status in counts) counts[m.status]++;
      return el(
        "tr",
        { class: m.me ? "me" : undefined, "data-node": m.id, "data-status": m.status },
        cell("node", el("span", { class: "mono", text: m.id }), m.me ? el("span", { class: "me-badge", text: "this node" }) : null),
        cell("status", el("span", { class: `status status-${status.css}`, text: status.text })),
        cell("role", m.role ? String(m.role) : "—"),
        cell(
          "address",
          el("span", { class: "mono", text: String(m.address) }),
          el("span", { class: "ports", text: `udp ${m.udp_port} · tcp ${m.tcp_port}` }),
        ),
        cell("generation", String(m.generation ?? "—")),
        cell("last heard", m.me ? "—" : ago(m.last_heard_s)),
        cell("detector", m.me ? "—" : detectorText(m.detector)),
      );
    });
    $("members").tBodies[0].replaceChildren(...rows);
    const alive = members.filter((m) => m.status === "alive").length;
    $("members-count").textContent = `${alive} alive of ${members.length}`;
    $("fig-alive").textContent = number(counts.alive);
    $("fig-dead").textContent = number(counts.dead);
    $("fig-left").textContent = number(counts.left);
    const note = $("members-more");
    note.hidden = !more;
    note.textContent = more ? `Showing the first ${members.length} members.` : "";
  }

  function renderKeys(keys, more) {
    const byNode = new Map();
    for (const k of keys) {
      const node = String(k.node);
      if (!byNode.has(node)) byNode.set(node, []);
      byNode.get(node).push(k);
    }
    const open = new Set(
      [...document.querySelectorAll("#keys details:not([open])")].map((d) => d.dataset.node),
    );
    const sections = [...byNode.keys()].sort().map((node) => {
      const entries = byNode.get(node).sort((a, b) => String(a.key).localeCompare(String(b.key)));
      const rows = entries.map((k) => {
        const { parts, marker } = valueCell(k.type, k.value);
        return el(
          "tr",
          { "data-node": node, "data-key": k.key, "data-type": k.type },
          cell("key", el("span", { class: "mono", text: k.key })),
          cell("value", ...parts),
          cell("type", marker),
          cell("version", String(k.version ?? "—")),
          cell("time", stamp(k.timestamp)),
        );
      });
      const table = el(
        "table",
        { class: "stack keys-table" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ...["key", "value", "type", "version", "time"].map((h) => el("th", { scope: "col", class: "col-" + h, text: h })),
          ),
        ),
        el("tbody", {}, ...rows),
      );
      const details = el(
        "details",
        { class: "node-keys", "data-node": node },
        el("summary", {}, el("span", { class: "mono", text: node }), el("span", { class: "count", text: plural(entries.length, "key") })),
        el("div", { class: "table-wrap" }, table),
      );
      details.open = !open.has(node); // a section the user closed stays closed
      return details;
    });
    if (sections.length === 0) sections.push(el("p", { class: "hint", text: "No key yet." }));
    $("keys").replaceChildren(...sections);
    $("keys-count").textContent = `${plural(keys.length, "key")} on ${plural(byNode.size, "node")}`;
    $("fig-keys").textContent = number(keys.length);
    const note = $("keys-more");
    note.hidden = !more;
    note.textContent = more ? `Showing the first ${keys.length} keys.` : "";
  }

  function renderEvent(name, data) {
    const feed = $("events");
    const d = data && typeof data === "object" ? data : {};
    const item = el(
      "li",
      { class: "ev-" + String(name).replace(/[^a-z_]/g, ""), "data-event": name },
      el("time", { text: clock(typeof d.time === "number" ? d.time : Date.now() / 1000) }),
      el("span", { class: "event-name", text: name }),
    );
    if (d.node) item.append(el("span", { class: "mono", text: d.node }));
    if (d.key !== undefined && d.key !== null) {
      item.append(el("span", { class: "mono", text: d.key }));
      if (d.value !== undefined && d.value !== null) {
        const { parts, marker } = valueCell(d.type, d.value);
        item.append(el("span", {}, "= ", ...parts), marker);
      }
    }
    feed.prepend(item);
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
    $("events-empty").hidden = true;
  }

  // -- polling ----------------------------------------------------------------

  async function refreshHealth() {
    const { status, body } = await api("v1/health", [503]);
    const pill = $("health");
    if (status === 200) {
      pill.dataset.state = "ok";
      pill.textContent = "health: ok";
    } else {
      pill.dataset.state = "wait";
      pill.textContent = "health: " + (typeof body.reason === "string" ? body.reason : "unavailable");
    }
  }

  async function poll() {
    try {
      const [info, members] = await Promise.all([api("v1/info"), allPages("v1/members", "members")]);
      renderInfo(info.body);
      renderMembers(members.items, members.more);
      await refreshHealth();
      showProblem("");
    } catch (err) {
      failed(err);
    }
  }

  async function refreshKeys() {
    state.keysTimer = null;
    try {
      const keys = await allPages("v1/keys", "keys");
      renderKeys(keys.items, keys.more);
    } catch (err) {
      failed(err);
    }
  }

  function keysSoon() {
    if (state.keysTimer === null) state.keysTimer = setTimeout(refreshKeys, KEY_EVENT_DELAY_MS);
  }

  function failed(err) {
    if (err instanceof Unauthorized) {
      askForToken(state.token ? "That token was refused: " + err.message : null);
      return;
    }
    $("health").dataset.state = "bad";
    $("health").textContent = "health: no answer";
    showProblem("Cannot read this node's control API: " + err.message);
  }

  // -- the event stream (SSE over fetch) ---------------------------------------
  // EventSource cannot send an Authorization header; fetch with a streamed body
  // can, so the token never goes into a URL. The stream is parsed as the SSE
  // format says: lines, "event:"/"data:" fields, a blank line ends an event.

  async function followEvents() {
    if (state.stopped) return;
    const pill = $("stream");
    const controller = new AbortController();
    state.stream = controller;
    try {
      const query = new URLSearchParams(FOLLOWED.map((name) => ["event", name]));
      const resp = await fetch(url("v1/events?" + query), {
        headers: headers("text/event-stream"),
        cache: "no-store",
        signal: controller.signal,
      });
      if (resp.status === 401) throw new Unauthorized(await errorText(resp));
      if (!resp.ok || !resp.body) throw new Error(`v1/events: ${resp.status} ${resp.statusText}`);
      pill.dataset.state = "ok";
      pill.textContent = "events: live";
      state.retryMs = 1000;
      keysSoon(); // what changed while the stream was down
      await readEvents(resp.body, (name, data) => onEvent(name, data));
      throw new Error("the node closed the event stream");
    } catch (err) {
      if (controller.signal.aborted || state.stopped) return;
      if (err instanceof Unauthorized) {
        failed(err);
        return;
      }
      pill.dataset.state = "wait";
      pill.textContent = `events: reconnecting in ${Math.round(state.retryMs / 1000)} s`;
      setTimeout(followEvents, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    }
  }

  async function readEvents(body, dispatch) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let name = "message";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop(); // an unfinished line waits for more
      for (const line of lines) {
        if (line === "") {
          if (data.length) dispatch(name, data.join("\n"));
          name = "message";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: the keepalive
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let rest = colon === -1 ? "" : line.slice(colon + 1);
        if (rest.startsWith(" ")) rest = rest.slice(1);
        if (field === "event") name = rest;
        else if (field === "data") data.push(rest);
      }
    }
  }

  function onEvent(name, raw) {
    let data = null;
    try {
      data = JSON.parse(raw);
    } catch {
      data = { text: raw };
    }
    const eventName = typeof data.event === "string" ? data.event : name;
    renderEvent(eventName, data);
    if (KEY_EVENTS.has(eventName)) keysSoon();
    if (PEER_EVENTS.has(eventName)) poll();
  }

  // -- the token ----------------------------------------------------------------

  function askForToken(error) {
    stop();
    $("token-form").hidden = false;
    const errorLine = $("token-error");
    errorLine.hidden = !error;
    errorLine.textContent = error || "";
    $("health").dataset.state = "wait";
    $("health").textContent = "health: token needed";
    $("stream").dataset.state = "wait";
    $("stream").textContent = "events: token needed";
    $("token-input").focus();
  }

  function useToken(event) {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    $("token-form").hidden = true;
    start();
  }

  function forgetToken() {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    location.reload();
  }

  // -- start and stop -------------------------------------------------------------

  function stop() {
    state.stopped = true;
    clearInterval(state.pollTimer);
    clearInterval(state.keysPoll);
    if (state.stream) state.stream.abort();
  }

  function start() {
    state.stopped = false;
    state.previous = null;
    $("forget-token").hidden = !state.token;
    poll();
    refreshKeys();
    followEvents();
    state.pollTimer = setInterval(poll, POLL_MS);
    state.keysPoll = setInterval(refreshKeys, KEYS_EVERY_MS);
  }

  $("token-form").addEventListener("submit", useToken);
  $("forget-token").addEventListener("click", forgetToken);
  start();
})();
