// Switchyard dashboard: polls /status on the admin listener and renders pools, backends,
// routes and plugins; polls /history and /events for each backend's last five minutes and
// the timeline of events, both kept by the proxy (a reload of the page loses nothing).
// Every data call carries the bearer token when one was entered; the token lives in
// sessionStorage only (gone when the tab closes).
"use strict";

(function () {
  const POLL_MS = 1000;
  const HISTORY_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  const FETCH_TIMEOUT_MS = 3000;
  const TOKEN_KEY = "switchyard.adminToken";

  const $ = (id) => document.getElementById(id);
  const ui = {
    summary: $("summary"),
    banner: $("banner"),
    result: $("action-result"),
    pools: $("pools"),
    routes: $("routes").tBodies[0],
    pluginsSection: $("plugins-section"),
    fleetSection: $("fleet-section"),
    fleetSummary: $("fleet-summary"),
    fleetDisagreements: $("fleet-disagreements"),
    fleetInstances: $("fleet-instances").tBodies[0],
    fleetBackends: $("fleet-backends"),
    plugins: $("plugins").tBodies[0],
    events: $("events"),
    eventsEmpty: $("events-empty"),
    updated: $("updated"),
    tokenForm: $("token-form"),
    token: $("token"),
    tokenForget: $("token-forget"),
  };

  // Last counters per backend, for rates between two polls.
  const previous = new Map();
  // Each backend's points from /history ("pool|address" -> oldest first), the newest
  // point's time (for ?since_ms=), and how long a window the proxy keeps.
  const series = new Map();
  let historySince = 0;
  let windowMs = 300000;
  let lastExtras = 0;
  // The browser's clock minus the proxy's, so "3 min ago" is the proxy's time.
  let clockOffset = 0;
  // Backend names by address, from the latest /status.
  const names = new Map();
  let events = [];
  let timer = null;
  let inFlight = false;

  function readToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  function writeToken(value) {
    try {
      if (value) {
        sessionStorage.setItem(TOKEN_KEY, value);
      } else {
        sessionStorage.removeItem(TOKEN_KEY);
      }
    } catch (_) {
      // Storage may be unavailable (private mode); the token then lasts for this page only.
    }
    memoryToken = value;
  }

  let memoryToken = readToken();

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    if (memoryToken) {
      h.Authorization = "Bearer " + memoryToken;
    }
    return h;
  }

  // Changes always say they are JSON (even without a body): the admin API refuses
  // any other change, which is what keeps cross-site forms and no-cors fetches out.
  async function call(method, path, body) {
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    try {
      const change = method !== "GET" && method !== "HEAD";
      const init = {
        method,
        headers: headers(change ? { "Content-Type": "application/json" } : {}),
        cache: "no-store",
        credentials: "omit",
        signal: controller.signal,
      };
      if (change) {
        init.body = JSON.stringify(body === undefined ? {} : body);
      }
      return await fetch(path, init);
    } finally {
      clearTimeout(timeout);
    }
  }

  // ---- connection state -------------------------------------------------------------

  function showBanner(text) {
    ui.banner.textContent = text;
    ui.banner.hidden = false;
    document.body.classList.add("disconnected");
  }

  function hideBanner() {
    ui.banner.hidden = true;
    ui.banner.textContent = "";
    document.body.classList.remove("disconnected");
  }

  function needToken(wrong) {
    ui.tokenForm.hidden = false;
    showBanner(
      wrong
        ? "The admin API refused the token. Enter the admin bearer token to continue."
        : "The admin API needs a bearer token. Enter it above to see live status."
    );
    ui.summary.textContent = "Waiting for the admin token.";
  }

  // ---- polling ----------------------------------------------------------------------

  async function poll() {
    if (inFlight) {
      return;
    }
    inFlight = true;
    try {
      const response = await call("GET", "/status");
      if (response.status === 401) {
        needToken(Boolean(memoryToken));
        return;
      }
      if (!response.ok) {
        showBanner("Disconnected: /status answered " + response.status + ". Retrying every second…");
        return;
      }
      const status = await response.json();
      hideBanner();
      render(status);
      if (Date.now() - lastExtras >= HISTORY_MS) {
        lastExtras = Date.now();
        await pollExtras();
      } else {
        renderTrends();
        renderEvents();
      }
    } catch (error) {
      const why = error && error.name === "AbortError" ? "timed out" : "unreachable";
      showBanner("Disconnected: the admin API is " + why + ". Retrying every second…");
    } finally {
      inFlight = false;
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await poll();
      schedule();
    }, POLL_MS);
  }

  async function refreshNow() {
    clearTimeout(timer);
    await poll();
    schedule();
  }

  // ---- rendering helpers ------------------------------------------------------------

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      node.setAttribute(key, value);
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function setText(node, text) {
    const value = String(text);
    if (node.textContent !== value) {
      node.textContent = value;
    }
  }

  function fmtRate(perSecond) {
    if (perSecond === null) {
      return "–";
    }
    return perSecond >= 100 ? perSecond.toFixed(0) : perSecond.toFixed(1);
  }

  function fmtPercent(ratio) {
    if (ratio === null) {
      return "–";
    }
    return (ratio * 100).toFixed(ratio > 0 && ratio < 0.1 ? 1 : 0) + "%";
  }

  // Now on the proxy's clock, in Unix milliseconds.
  function serverNow() {
    return Date.now() - clockOffset;
  }

  // "just now", "42 s ago", "3 min ago", "2 h ago", "4 days ago".
  function ago(atMs) {
    const seconds = Math.max(0, Math.round((serverNow() - atMs) / 1000));
    if (seconds < 5) {
      return "just now";
    }
    if (seconds < 60) {
      return seconds + " s ago";
    }
    if (seconds < 3600) {
      return Math.floor(seconds / 60) + " min ago";
    }
    if (seconds < 86400) {
      return Math.floor(seconds / 3600) + " h ago";
    }
    const days = Math.floor(seconds / 86400);
    return days + (days === 1 ? " day ago" : " days ago");
  }

  // A <time> saying how long ago `atMs` was, with the exact time on hover.
  function agoTime(atMs) {
    const when = new Date(atMs + clockOffset);
    return el("time", { datetime: new Date(atMs).toISOString(), title: when.toLocaleString() }, ago(atMs));
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) {
      return "–";
    }
    return ms >= 100 ? ms.toFixed(0) + " ms" : ms >= 10 ? ms.toFixed(1) + " ms" : ms.toFixed(2) + " ms";
  }

  // A backend as people know it: its name when it has one, else its address.
  function backendLabel(address) {
    return names.get(address) || address;
  }

  // Keeps the characters backend addresses use (host:port, [v6]:port) readable in the path;
  // the admin router matches the address as written in the config.
  function pathPart(text) {
    return encodeURIComponent(text).replace(/%3A/gi, ":").replace(/%5B/gi, "[").replace(/%5D/gi, "]");
  }

  // ---- pools and backends -----------------------------------------------------------

  const COLUMNS = [
    ["address", "Backend"],
    ["health", "Health"],
    ["breaker", "Breaker"],
    ["admin_state", "Admin state"],
    ["weight", "Weight", "num"],
    ["effective_weight", "Effective", "num"],
    ["in_flight", "In flight", "num"],
    ["rate", "Req/s", "num"],
    ["error_rate", "Errors", "num"],
    ["trend", "Last 5 min"],
    ["actions", "Actions"],
  ];

  function poolTable(pool) {
    const id = "pool-" + pool.name;
    let section = ui.pools.querySelector('section[data-pool="' + CSS.escape(pool.name) + '"]');
    if (section) {
      return section;
    }
    section = el("section", { "data-pool": pool.name, "aria-labelledby": id + "-title", class: "pool" });
    const heading = el("h3", { id: id + "-title" });
    heading.append(el("span", { class: "pool-name" }, pool.name), el("span", { class: "pool-meta" }));
    const table = el("table", { id: id, "data-pool": pool.name });
    table.append(el("caption", { class: "visually-hidden" }, "Backends of pool " + pool.name));
    const headRow = el("tr");
    for (const [, label, cls] of COLUMNS) {
      headRow.append(el("th", cls ? { scope: "col", class: cls } : { scope: "col" }, label));
    }
    const thead = el("thead");
    thead.append(headRow);
    table.append(thead, el("tbody"));
    section.append(heading, table);
    ui.pools.append(section);
    return section;
  }

  function backendRow(tbody, pool, backend) {
    const selector = 'tr[data-backend="' + CSS.escape(backend.address) + '"]';
    let row = tbody.querySelector(selector);
    if (row) {
      return row;
    }
    row = el("tr", { "data-backend": backend.address, "data-pool": pool.name });
    for (const [field, , cls] of COLUMNS) {
      const cell = el(field === "address" ? "th" : "td", { "data-field": field });
      if (field === "address") {
        cell.setAttribute("scope", "row");
        cell.append(el("span", { class: "backend-name" }), el("span", { class: "backend-address" }));
      }
      if (field === "trend") {
        cell.classList.add("trend");
        cell.append(
          sparkline("rps", "requests per second"),
          sparkline("errors", "error rate"),
          sparkline("p99", "p99 latency")
        );
      }
      if (cls) {
        cell.classList.add(cls);
      }
      row.append(cell);
    }
    const actions = row.querySelector('[data-field="actions"]');
    const label = (backend.name || backend.address) + " in pool " + pool.name;
    for (const action of ["drain", "enable", "disable"]) {
      const button = el("button", { type: "button", "data-action": action, "aria-label": action + " " + label }, action);
      button.addEventListener("click", () => act(pool.name, backend.address, action));
      actions.append(button);
    }
    const form = el("form", { class: "weight-form", "data-action": "weight" });
    const input = el("input", {
      type: "number",
      min: "0",
      max: "1000000",
      step: "1",
      inputmode: "numeric",
      required: "",
      "data-weight-input": "",
      "aria-label": "new weight for " + label,
    });
    const set = el("button", { type: "submit", "data-action": "set-weight", "aria-label": "set weight of " + label }, "set weight");
    form.append(input, set);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const weight = Number(input.value);
      if (!Number.isInteger(weight) || weight < 0) {
        report("Weight must be a whole number of 0 or more.", true);
        return;
      }
      act(pool.name, backend.address, "weight", { weight }).then(() => {
        input.value = "";
      });
    });
    actions.append(form);
    tbody.append(row);
    return row;
  }

  function rates(key, backend, now) {
    const before = previous.get(key);
    previous.set(key, { requests: backend.requests, failures: backend.failures, at: now });
    if (!before || backend.requests < before.requests || backend.failures < before.failures) {
      return { rate: null, errors: null };
    }
    const seconds = (now - before.at) / 1000;
    const requests = backend.requests - before.requests;
    const failures = backend.failures - before.failures;
    if (seconds <= 0) {
      return { rate: null, errors: null };
    }
    let errors = 0;
    if (requests > 0) {
      errors = Math.min(1, failures / requests);
    } else if (failures > 0) {
      errors = 1;
    }
    return { rate: requests / seconds, errors };
  }

  function renderBackend(row, pool, backend, now) {
    const field = (name) => row.querySelector('[data-field="' + name + '"]');
    const { rate, errors } = rates(pool.name + "|" + backend.address, backend, now);
    row.dataset.health = backend.health;
    row.dataset.breaker = backend.breaker;
    row.dataset.adminState = backend.admin_state;
    row.dataset.usable = String(backend.usable);
    row.classList.toggle("unusable", !backend.usable);

    const named = typeof backend.name === "string" && backend.name !== "";
    setText(field("address").querySelector(".backend-name"), named ? backend.name : backend.address);
    setText(field("address").querySelector(".backend-address"), named ? backend.address : "");
    badge(field("health"), backend.health, "health-" + backend.health);
    const breaker = backend.breaker === "open" && backend.breaker_open_remaining_ms > 0
      ? "open (" + Math.ceil(backend.breaker_open_remaining_ms / 1000) + " s)"
      : backend.breaker;
    badge(field("breaker"), breaker, "breaker-" + backend.breaker);
    badge(field("admin_state"), backend.admin_state, "admin-" + backend.admin_state);
    const configured = backend.config_weight;
    setText(
      field("weight"),
      configured !== null && configured !== undefined && configured !== backend.weight
        ? backend.weight + " (config " + configured + ")"
        : backend.weight
    );
    setText(field("effective_weight"), backend.effective_weight);
    setText(field("in_flight"), backend.in_flight);
    setText(field("rate"), fmtRate(rate));
    const errorCell = field("error_rate");
    setText(errorCell, fmtPercent(errors));
    errorCell.classList.toggle("bad", errors !== null && errors > 0);

    const buttons = row.querySelectorAll("button[data-action]");
    for (const button of buttons) {
      const action = button.dataset.action;
      const state = backend.admin_state;
      button.disabled =
        (action === "drain" && (state === "draining" || state === "drained")) ||
        (action === "enable" && state === "active") ||
        (action === "disable" && state === "disabled");
    }
  }

  function badge(cell, text, cls) {
    let span = cell.firstElementChild;
    if (!span) {
      span = el("span");
      cell.append(span);
    }
    setText(span, text);
    const wanted = "badge " + cls;
    if (span.className !== wanted) {
      span.className = wanted;
    }
  }

  function renderPools(pools) {
    const now = performance.now();
    const seenPools = new Set();
    for (const pool of pools) {
      seenPools.add(pool.name);
      const section = poolTable(pool);
      const meta = section.querySelector(".pool-meta");
      const parts = [pool.balance, pool.usable + " of " + pool.backends.length + " usable"];
      if (pool.backup) {
        parts.push("backup " + pool.backup);
      }
      if (!pool.health_checked) {
        parts.push("no active health check");
      }
      setText(meta, " — " + parts.join(", "));
      section.classList.toggle("pool-down", pool.usable === 0);
      const tbody = section.querySelector("tbody");
      const seenRows = new Set();
      for (const backend of pool.backends) {
        seenRows.add(backend.address);
        renderBackend(backendRow(tbody, pool, backend), pool, backend, now);
      }
      for (const row of Array.from(tbody.rows)) {
        if (!seenRows.has(row.dataset.backend)) {
          previous.delete(pool.name + "|" + row.dataset.backend);
          row.remove();
        }
      }
    }
    for (const section of Array.from(ui.pools.children)) {
      if (!seenPools.has(section.dataset.pool)) {
        section.remove();
      }
    }
  }

  // ---- routes and plugins -----------------------------------------------------------

  function targetText(target, fallbackPool) {
    if (!target) {
      return "pool " + fallbackPool;
    }
    if (target.pool) {
      return "pool " + target.pool;
    }
    if (target.split) {
      const shares = Object.entries(target.split).map(([pool, share]) => pool + " " + share + "%");
      let text = "split " + shares.join(" / ");
      if (target.sticky) {
        text += " (sticky on " + target.sticky + ")";
      }
      return text;
    }
    return JSON.stringify(target);
  }

  function fillRows(tbody, items, key, cells) {
    const fresh = document.createDocumentFragment();
    for (const item of items) {
      const row = el("tr", { [key]: item.name });
      cells(item).forEach((value, index) => {
        const cell = el(index === 0 ? "th" : "td", index === 0 ? { scope: "row" } : {});
        if (value instanceof Node) {
          cell.append(value);
        } else {
          cell.textContent = value === null || value === undefined ? "–" : String(value);
        }
        row.append(cell);
      });
      fresh.append(row);
    }
    // Replace only when something changed, so text selection survives quiet refreshes.
    const probe = el("tbody");
    probe.append(fresh.cloneNode(true));
    if (probe.innerHTML !== tbody.innerHTML) {
      tbody.replaceChildren(fresh);
    }
  }

  function renderRoutes(routes) {
    fillRows(ui.routes, routes, "data-route", (route) => [
      route.name,
      route.listener,
      route.host,
      route.path_prefix,
      targetText(route.target, route.pool),
    ]);
  }

  function renderPlugins(plugins) {
    if (!Array.isArray(plugins)) {
      ui.pluginsSection.hidden = true;
      return;
    }
    ui.pluginsSection.hidden = false;
    fillRows(ui.plugins, plugins, "data-plugin", (plugin) => {
      const errors = el("span", { class: "error-badges" });
      for (const [kind, count] of Object.entries(plugin.errors || {})) {
        if (count > 0) {
          errors.append(el("span", { class: "badge error-kind", "data-error-kind": kind, title: count + " " + kind + " error(s)" },
            kind + " " + count));
        }
      }
      if (!errors.firstChild) {
        errors.textContent = "none";
      }
      const loaded = typeof plugin.loaded_at === "number" ? agoTime(plugin.loaded_at * 1000) : "–";
      if (plugin.last_reload_error && typeof plugin.last_reload_error.at === "number") {
        const refused = el("span", { class: "badge plugin-quarantined", title: plugin.last_reload_error.error || "" },
          "reload refused " + ago(plugin.last_reload_error.at * 1000));
        errors.append(" ", refused);
      }
      const state = el("span", { class: "badge " + (plugin.quarantined ? "plugin-quarantined" : "plugin-ok") },
        plugin.quarantined ? "quarantined" : "active");
      const digest = typeof plugin.digest === "string" ? plugin.digest : "";
      const short = el("code", { title: digest }, digest.replace(/^sha256:/, "").slice(0, 12));
      return [
        plugin.name,
        plugin.kind,
        state,
        plugin.calls,
        errors,
        plugin.on_error,
        loaded,
        short,
        plugin.path,
      ];
    });
    if (plugins.length === 0) {
      const row = el("tr");
      row.append(el("td", { colspan: "9" }, "No plugins loaded."));
      ui.plugins.replaceChildren(row);
    }
  }

  // ---- fleet (instances coordinated through etcd) ------------------------------------

  async function pollFleet() {
    try {
      const response = await call("GET", "/cluster");
      if (!response.ok) {
        ui.fleetSection.hidden = true;
        return;
      }
      renderFleet(await response.json());
    } catch (_) {
      // The next poll tries again; /status already shows when the admin API is gone.
    }
  }

  function fmtAge(ms) {
    if (typeof ms !== "number") {
      return "–";
    }
    return ms < 10000 ? (ms / 1000).toFixed(1) + " s ago" : Math.round(ms / 1000) + " s ago";
  }

  function configText(config) {
    if (!config) {
      return "–";
    }
    let text = typeof config.revision === "number"
      ? "shared revision " + config.revision
      : "own file " + String(config.digest || "").slice(0, 12);
    if (config.refused) {
      text += " (refused revision " + config.refused.revision + ")";
    }
    return text;
  }

  function renderFleet(fleet) {
    ui.fleetSection.hidden = false;
    const etcd = fleet.connected
      ? "etcd connected at revision " + fleet.revision
      : "etcd unreachable: serving with the last state, changes are refused (" + (fleet.error || "no answer") + ")";
    setText(ui.fleetSummary, "This instance: " + fleet.instance + " · fleet " + fleet.prefix + " · " + etcd +
      " · rollout leader " + (fleet.leader || "none"));
    ui.fleetSummary.classList.toggle("fleet-lost", !fleet.connected);

    const disagreements = Array.isArray(fleet.disagreements) ? fleet.disagreements : [];
    const items = disagreements.map((d) => {
      const views = Object.entries(d.views || {}).map(([name, value]) => name + ": " + String(value)).join(", ");
      const what = d.backend ? d.backend + " " + d.field : d.field;
      return el("li", {}, "Instances disagree on " + what + " (" + views + ")");
    });
    const list = el("ul");
    list.append(...items);
    if (list.innerHTML !== ui.fleetDisagreements.innerHTML) {
      ui.fleetDisagreements.replaceChildren(...items);
    }

    const instances = Array.isArray(fleet.instances) ? fleet.instances : [];
    fillRows(ui.fleetInstances, instances, "data-instance", (i) => [
      i.name + (i.self ? " (this one)" : ""),
      i.stale ? "gone?" : (i.leader ? "rollout leader" : "member"),
      fmtAge(i.heartbeat_age_ms),
      configText(i.config),
      i.state_revision,
      i.admin,
    ]);
    Array.from(ui.fleetInstances.rows).forEach((row, index) => {
      row.classList.toggle("stale", Boolean(instances[index] && instances[index].stale));
    });

    // One row per backend, one column per instance; rows where live instances
    // disagree are highlighted.
    const live = instances.filter((i) => !i.stale);
    const header = el("tr");
    header.append(el("th", { scope: "col" }, "Backend"));
    live.forEach((i) => header.append(el("th", { scope: "col" }, i.name)));
    const head = ui.fleetBackends.tHead;
    const probe = el("thead");
    probe.append(header.cloneNode(true));
    if (probe.innerHTML !== head.innerHTML) {
      head.replaceChildren(header);
    }
    const backends = new Set();
    live.forEach((i) => Object.keys(i.backends || {}).forEach((b) => backends.add(b)));
    const disputed = new Set(disagreements.filter((d) => d.backend).map((d) => d.backend));
    const rows = Array.from(backends).sort().map((name) => ({ name }));
    const body = ui.fleetBackends.tBodies[0];
    fillRows(body, rows, "data-backend", (row) => [row.name].concat(live.map((i) => {
      const view = (i.backends || {})[row.name];
      if (!view) {
        return "absent";
      }
      return el("span", { class: "badge health-" + view.health }, view.health +
        (view.admin_state !== "active" ? ", " + view.admin_state : "") +
        (view.usable ? "" : ", not usable"));
    })));
    Array.from(body.rows).forEach((row) => {
      row.classList.toggle("disagree", disputed.has(row.dataset.backend));
    });
  }

  function render(status) {
    const listeners = (status.listeners || [])
      .map((l) => l.name + " " + (l.tls ? "https://" : "http://") + l.address)
      .join(", ");
    setText(
      ui.summary,
      (status.ready ? "Ready" : "Not ready") +
        " · config " + status.config +
        (listeners ? " · listeners " + listeners : "")
    );
    document.body.dataset.ready = String(Boolean(status.ready));
    names.clear();
    for (const pool of status.pools || []) {
      for (const backend of pool.backends || []) {
        if (typeof backend.name === "string" && backend.name !== "") {
          names.set(backend.address, backend.name);
        }
      }
    }
    renderPools(status.pools || []);
    renderRoutes(status.routes || []);
    renderPlugins(status.plugins);
    if (status.cluster) {
      pollFleet();
    } else {
      ui.fleetSection.hidden = true;
    }
    ui.updated.dateTime = new Date().toISOString();
    setText(ui.updated, new Date().toLocaleTimeString());
  }

  // ---- history (sparklines) and events ------------------------------------------------

  async function pollExtras() {
    try {
      const [historyResponse, eventsResponse] = await Promise.all([
        call("GET", "/history?since_ms=" + historySince),
        call("GET", "/events"),
      ]);
      if (historyResponse.ok) {
        mergeHistory(await historyResponse.json());
      }
      if (eventsResponse.ok) {
        const body = await eventsResponse.json();
        clockOffset = Date.now() - body.now_ms;
        events = Array.isArray(body.events) ? body.events : [];
      }
    } catch (_) {
      // The next poll tries again; /status already shows when the admin API is gone.
    }
    renderTrends();
    renderEvents();
  }

  function mergeHistory(history) {
    if (typeof history.window_ms === "number") {
      windowMs = history.window_ms;
    }
    const oldest = history.now_ms - windowMs;
    for (const backend of history.backends || []) {
      const key = backend.pool + "|" + backend.address;
      const kept = (series.get(key) || []).concat(backend.points || []).filter((p) => p.at_ms > oldest);
      series.set(key, kept);
      for (const p of backend.points || []) {
        historySince = Math.max(historySince, p.at_ms);
      }
    }
  }

  function sparkline(kind, label) {
    const wrap = el("span", { class: "spark spark-" + kind, "data-spark": kind, "data-points": "0" });
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 100 24");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label + " over the last five minutes");
    svg.append(document.createElementNS(SVG, "polyline"));
    wrap.append(svg, el("span", { class: "spark-value" }, "–"));
    wrap.dataset.label = label;
    return wrap;
  }

  // Draws `values` ([at_ms, value] pairs, oldest first) from 0 up to their maximum
  // (at least `floor`), and shows the newest value. The curve spans the proxy's
  // window once it has that much, and at least the last minute before that, so a
  // young curve is not squeezed into the right edge.
  function drawSpark(wrap, values, floor, format) {
    const now = serverNow();
    const max = Math.max(floor, ...values.map(([, v]) => v));
    const oldest = values.length ? values[0][0] : now;
    const span = Math.min(windowMs, Math.max(60000, now - oldest));
    const points = values.map(([at, v]) => {
      const x = Math.max(0, Math.min(100, 100 - ((now - at) / span) * 100));
      const y = 22 - (v / max) * 20;
      return x.toFixed(2) + "," + y.toFixed(2);
    });
    const line = wrap.querySelector("polyline");
    const joined = points.join(" ");
    if (line.getAttribute("points") !== joined) {
      line.setAttribute("points", joined);
    }
    wrap.dataset.points = String(values.length);
    const latest = values.length ? format(values[values.length - 1][1]) : "–";
    setText(wrap.querySelector(".spark-value"), latest);
    wrap.title = wrap.dataset.label + ": now " + latest + ", highest " + (values.length ? format(max) : "–") +
      " in the last five minutes";
  }

  function renderTrends() {
    for (const row of ui.pools.querySelectorAll("tr[data-backend]")) {
      const points = series.get(row.dataset.pool + "|" + row.dataset.backend) || [];
      const cell = row.querySelector('[data-field="trend"]');
      drawSpark(cell.querySelector('[data-spark="rps"]'), points.map((p) => [p.at_ms, p.requests_per_s]), 1,
        (v) => fmtRate(v) + "/s");
      drawSpark(cell.querySelector('[data-spark="errors"]'), points.map((p) => [p.at_ms, p.error_rate]), 0.05,
        fmtPercent);
      drawSpark(cell.querySelector('[data-spark="p99"]'),
        points.filter((p) => typeof p.p99_ms === "number").map((p) => [p.at_ms, p.p99_ms]), 1, fmtMs);
    }
  }

  function renderEvents() {
    ui.eventsEmpty.hidden = events.length > 0;
    const newest = events.length ? events[events.length - 1].id : 0;
    if (String(newest) !== ui.events.dataset.newest || events.length !== ui.events.children.length) {
      const items = events.slice().reverse().map((e) => {
        const item = el("li", { "data-event-id": String(e.id), "data-kind": e.kind });
        if (e.warning) {
          item.classList.add("warning");
        }
        const subject = e.backend
          ? backendLabel(e.backend) + (e.pool ? " (" + e.pool + ")" : "")
          : "";
        item.append(
          agoTime(e.at_ms),
          el("span", { class: "badge kind-" + e.kind }, e.kind),
          el("span", { class: "event-subject", title: e.backend || "" }, subject),
          el("span", { class: "event-message" }, e.message)
        );
        item.dataset.at = String(e.at_ms);
        return item;
      });
      ui.events.replaceChildren(...items);
      ui.events.dataset.newest = String(newest);
    }
    for (const item of ui.events.children) {
      setText(item.querySelector("time"), ago(Number(item.dataset.at)));
      const subject = item.querySelector(".event-subject");
      if (subject.title) {
        const e = events.find((x) => String(x.id) === item.dataset.eventId);
        if (e) {
          setText(subject, backendLabel(e.backend) + (e.pool ? " (" + e.pool + ")" : ""));
        }
      }
    }
  }

  // ---- actions ----------------------------------------------------------------------

  function report(text, isError) {
    ui.result.textContent = text;
    ui.result.classList.toggle("error", Boolean(isError));
  }

  async function act(pool, address, action, body) {
    const path = "/pools/" + pathPart(pool) + "/backends/" + pathPart(address) + "/" + action;
    try {
      const response = await call("POST", path, body === undefined ? undefined : body);
      let answer = {};
      try {
        answer = await response.json();
      } catch (_) {
        answer = {};
      }
      if (response.status === 401) {
        needToken(Boolean(memoryToken));
        report(action + " " + address + ": refused, the admin token is missing or wrong.", true);
      } else if (!response.ok) {
        report(action + " " + address + " failed: " + (answer.error || "HTTP " + response.status), true);
      } else {
        const state = answer.admin_state ? " → " + answer.admin_state : "";
        const weight = action === "weight" && answer.weight !== undefined ? " → weight " + answer.weight : "";
        report(action + " " + address + " in " + pool + ": done" + (weight || state) + ".", false);
      }
    } catch (_) {
      report(action + " " + address + " failed: the admin API is unreachable.", true);
    }
    // The change is on the timeline at once.
    lastExtras = 0;
    await refreshNow();
  }

  // ---- token form -------------------------------------------------------------------

  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    writeToken(ui.token.value.trim());
    ui.token.value = "";
    ui.tokenForm.hidden = true;
    refreshNow();
  });

  ui.tokenForget.addEventListener("click", () => {
    writeToken("");
    ui.token.value = "";
    refreshNow();
  });

  refreshNow();
})();
