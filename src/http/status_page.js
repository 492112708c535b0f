// The status page: polls /nodes, /health and /metrics about once a second
// and shows them. Every string from the server reaches the DOM through
// textContent, never as HTML.
(() => {
  "use strict";

  const POLL_MS = 1000;
  const POLL_TIMEOUT_MS = 2500;
  const ACTION_TIMEOUT_MS = 30000;
  const RATE_WINDOW_S = 60;
  const MAX_EVENTS = 30;
  const REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
  };

  const faultInjection = document.body.dataset.faultInjection === "true";
  const numberFormat = new Intl.NumberFormat();
  const dom = {
    connection: byId("connection"),
    updated: byId("updated"),
    health: byId("health"),
    master: byId("master"),
    masterChanged: byId("master-changed"),
    ingestRate: byId("ingest-rate"),
    ingestPeak: byId("ingest-peak"),
    sparklineLine: byId("sparkline-line"),
    actionStatus: byId("action-status"),
    nodes: byId("nodes"),
    lookup: byId("lookup"),
    tenant: byId("tenant"),
    lookupResult: byId("lookup-result"),
    events: byId("events"),
  };
  const state = {
    connection: "connecting",
    downSince: null,
    cards: new Map(),
    lastMaster: undefined,
    lastNodeStates: new Map(),
    rateSamples: [],
    poll: { timer: null, running: false, again: false },
  };

  function byId(id) {
    return document.getElementById(id);
  }

  // ---- HTTP ---------------------------------------------------------------

  /** One request; never throws. `reached` is false when no answer came. */
  async function request(method, path, timeoutMs) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const response = await fetch(path, { method, cache: "no-store", signal: controller.signal });
      const text = await response.text();
      return { reached: true, ok: response.ok, status: response.status, text, json: parseJson(text) };
    } catch (error) {
      const why = error && error.name === "AbortError" ? "no answer in time" : "connection failed";
      return { reached: false, ok: false, status: 0, text: "", json: null, why };
    } finally {
      clearTimeout(timer);
    }
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  /** "409 Conflict: node 1 is alive" for an error answer. */
  function describeFailure(reply) {
    if (!reply.reached) return `no answer from the server (${reply.why})`;
    const message = reply.json && typeof reply.json.message === "string"
      ? reply.json.message
      : reply.text.slice(0, 200);
    const status = `${reply.status} ${REASONS[reply.status] || ""}`.trim();
    return message ? `${status}: ${message}` : status;
  }

  // ---- Prometheus text ----------------------------------------------------

  function parsePrometheus(text) {
    const samples = [];
    for (const rawLine of text.split("\n")) {
      const line = rawLine.trim();
      if (line === "" || line.startsWith("#")) continue;
      const match = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (match) {
        samples.push({ name: match[1], labels: parseLabels(match[2] || ""), value: parseSampleValue(match[3]) });
      }
    }
    return samples;
  }

  function parseLabels(text) {
    const labels = {};
    for (const [, name, value] of text.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"/g)) {
      labels[name] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    return labels;
  }

  function parseSampleValue(text) {
    if (text === "+Inf") return Infinity;
    if (text === "-Inf") return -Infinity;
    return Number(text);
  }

  /** The metrics the page uses, by meaning. */
  function readMetrics(samples) {
    const single = (name) => {
      const sample = samples.find((s) => s.name === name && Object.keys(s.labels).length === 0);
      return sample ? sample.value : null;
    };
    const perNode = (name) => {
      const values = new Map();
      for (const s of samples) {
        if (s.name === name && s.labels.node !== undefined) values.set(Number(s.labels.node), s.value);
      }
      return values;
    };
    // The lag series may be renamed; any dc_node_replication_lag* will do.
    const lagSample = samples.find((s) => s.name.startsWith("dc_node_replication_lag"));
    const lagName = lagSample ? lagSample.name : "";
    const lagUnit = lagName.slice("dc_node_replication_lag".length).replace(/^_/, "").replace(/_/g, " ");
    return {
      accepted: single("dc_items_accepted_total"),
      masterChanges: single("dc_master_changes_total"),
      masterLastChange: single("dc_master_last_change_timestamp_seconds"),
      stalled: perNode("dc_node_stalled"),
      lag: perNode(lagName),
      lagUnit,
    };
  }

  // ---- Formatting ---------------------------------------------------------

  function formatNumber(value) {
    return typeof value === "number" && Number.isFinite(value) ? numberFormat.format(value) : "—";
  }

  function formatRate(perSecond) {
    const digits = perSecond > 0 && perSecond < 10 ? 1 : 0;
    return `${perSecond.toFixed(digits)} items/s`;
  }

  function formatClock(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function formatAgo(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 120) return `${s} s ago`;
    if (s < 7200) return `${Math.round(s / 60)} min ago`;
    return `${Math.round(s / 3600)} h ago`;
  }

  function setText(element, text) {
    if (element.textContent !== text) element.textContent = text;
  }

  function setOutcome(element, text, outcome) {
    setText(element, text);
    element.dataset.outcome = outcome;
  }

  // ---- Events seen by this page -------------------------------------------

  function addEvent(text) {
    const now = new Date();
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.dateTime = now.toISOString();
    time.textContent = formatClock(now);
    item.append(time, text);
    dom.events.prepend(item);
    while (dom.events.children.length > MAX_EVENTS) dom.events.lastElementChild.remove();
  }

  // ---- Connection ---------------------------------------------------------

  function showReachable() {
    if (state.connection === "down") {
      const gone = (Date.now() - state.downSince) / 1000;
      setText(dom.connection, `The server is back (it did not answer for ${Math.round(gone)} s).`);
      addEvent("The server answers again.");
    } else if (state.connection === "connecting") {
      setText(dom.connection, "Connected to the server.");
    }
    state.connection = "up";
    document.body.dataset.connection = "up";
    setText(dom.updated, `Updated ${formatClock(new Date())}; refreshes every second.`);
  }

  function showUnreachable(reply) {
    if (state.connection !== "down") {
      state.downSince = Date.now();
      const since = formatClock(new Date(state.downSince));
      setText(dom.connection,
        `The server is not answering since ${since} (${reply.why}). ` +
        "The data below is the last it sent; retrying every second.");
      addEvent("The server stopped answering.");
    }
    state.connection = "down";
    document.body.dataset.connection = "down";
  }

  // ---- Cluster overview ---------------------------------------------------

  function showHealth(reply) {
    if (reply.ok && reply.json) {
      setText(dom.health, `OK: node ${reply.json.master} is master`);
      dom.health.classList.remove("bad");
    } else {
      setText(dom.health, `Degraded: ${describeFailure(reply)}`);
      dom.health.classList.add("bad");
    }
  }

  function showMaster(nodes, metrics) {
    const master = nodes.find((node) => node.role === "master");
    const masterId = master ? master.id : null;
    setText(dom.master, masterId === null ? "none: no node serves reads" : `node ${masterId}`);
    if (state.lastMaster !== undefined && state.lastMaster !== masterId) {
      const name = (id) => (id === null ? "none" : `node ${id}`);
      addEvent(`Master changed: ${name(state.lastMaster)} → ${name(masterId)}.`);
    }
    state.lastMaster = masterId;

    const changedAt = metrics ? metrics.masterLastChange : null;
    if (changedAt === null) {
      setText(dom.masterChanged, "unknown (see the events below)");
    } else if (changedAt === 0) {
      setText(dom.masterChanged, "never: node 0 has been master since the start");
    } else {
      const count = metrics.masterChanges;
      const times = count === 1 ? "1 change" : `${formatNumber(count)} changes`;
      const ago = formatAgo(Date.now() / 1000 - changedAt);
      setText(dom.masterChanged, `${formatClock(new Date(changedAt * 1000))} (${ago}; ${times} since the start)`);
    }
  }

  /** Items/s from dc_items_accepted_total, with a sparkline of the last minute. */
  function showIngestRate(accepted) {
    const now = performance.now() / 1000;
    const samples = state.rateSamples;
    const last = samples[samples.length - 1];
    if (last && accepted < last.total) samples.length = 0; // the server restarted
    samples.push({ at: now, total: accepted });
    while (samples.length > 2 && samples[1].at < now - RATE_WINDOW_S) samples.shift();

    const rates = [];
    for (let i = 1; i < samples.length; i += 1) {
      const seconds = samples[i].at - samples[i - 1].at;
      if (seconds > 0) rates.push({ at: samples[i].at, perSecond: (samples[i].total - samples[i - 1].total) / seconds });
    }
    if (rates.length === 0) {
      setText(dom.ingestRate, "measuring…");
      return;
    }
    const peak = Math.max(...rates.map((rate) => rate.perSecond));
    setText(dom.ingestRate, formatRate(rates[rates.length - 1].perSecond));
    setText(dom.ingestPeak, `peak ${formatRate(peak)} in the last minute`);
    drawSparkline(rates, now, peak);
  }

  function drawSparkline(rates, now, peak) {
    const width = 120;
    const height = 32;
    const top = Math.max(peak, 1);
    const points = rates.map((rate) => {
      const x = width * (1 - (now - rate.at) / RATE_WINDOW_S);
      const y = height - 1 - (height - 2) * (rate.perSecond / top);
      return `${Math.max(0, x).toFixed(1)},${y.toFixed(1)}`;
    });
    dom.sparklineLine.setAttribute("points", points.join(" "));
  }

  // ---- Node cards ---------------------------------------------------------

  function element(tag, className, text) {
    const created = document.createElement(tag);
    if (className) created.className = className;
    if (text !== undefined) created.textContent = text;
    return created;
  }

  function createCard(id) {
    const article = element("article", "node");
    article.dataset.nodeId = String(id);
    article.setAttribute("aria-labelledby", `node-${id}-title`);

    const head = element("header", "node-head");
    const title = element("h3", "", `Node ${id}`);
    title.id = `node-${id}-title`;
    const role = element("span", "badge role");
    head.append(title, role);

    const stateWord = element("p", "state");
    const facts = element("dl");
    const field = (name, label) => {
      const value = element("dd");
      value.dataset.field = name;
      facts.append(element("dt", "", label), value);
      return value;
    };
    const card = {
      id, article, role, state: stateWord, buttons: [], stallInput: null,
      addr: field("addr", "Address"),
      items: field("items", "Items"),
      lag: field("lag", "Replication lag"),
      received: field("received", "Received"),
    };
    article.append(head, stateWord, facts);
    if (faultInjection) article.append(createFaultControls(card));
    return card;
  }

  function createFaultControls(card) {
    const group = element("div", "faults");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", `Faults for node ${card.id}`);
    const button = (action, label) => {
      const created = element("button", "", label);
      created.type = "button";
      created.dataset.action = action;
      created.append(element("span", "visually-hidden", ` node ${card.id}`));
      created.addEventListener("click", () => runFault(card, action));
      card.buttons.push(created);
      return created;
    };
    group.append(button("crash", "Crash"), button("restart", "Restart"), button("disconnect", "Disconnect"));

    const stall = element("div", "stall");
    const label = element("label", "", "Stall for ms");
    const input = element("input");
    Object.assign(input, { type: "number", id: `stall-ms-${card.id}`, min: "0", max: "600000", step: "100", value: "3000" });
    input.inputMode = "numeric";
    label.htmlFor = input.id;
    label.append(input);
    card.stallInput = input;
    stall.append(label, button("stall", "Stall"));
    group.append(stall);
    return group;
  }

  /** Builds the cards once per set of node ids, so focus and typed values survive refreshes. */
  function ensureCards(nodes) {
    const ids = nodes.map((node) => node.id);
    const same = ids.length === state.cards.size && ids.every((id) => state.cards.has(id));
    if (same) return;
    state.cards.clear();
    dom.nodes.replaceChildren();
    for (const id of ids) {
      const card = createCard(id);
      state.cards.set(id, card);
      dom.nodes.append(card.article);
    }
  }

  function nodeState(node, metrics) {
    if (!node.alive) return "dead";
    if (metrics && metrics.stalled.get(node.id) === 1) return "stalled";
    return "alive";
  }

  function showNodes(nodes, metrics) {
    ensureCards(nodes);
    for (const node of nodes) {
      const card = state.cards.get(node.id);
      const isMaster = node.role === "master";
      const word = nodeState(node, metrics);
      card.article.dataset.role = isMaster ? "master" : "replica";
      card.article.dataset.state = word;
      setText(card.role, isMaster ? "MASTER" : "replica");
      setText(card.state, word);
      setText(card.addr, node.addr ? String(node.addr) : node.alive ? "—" : "— (not listening)");
      setText(card.items, formatNumber(node.items));
      setText(card.received, formatNumber(node.received));
      const lag = metrics && node.alive ? metrics.lag.get(node.id) : undefined;
      setText(card.lag, lag === undefined ? "—" : `${formatNumber(lag)} ${metrics.lagUnit}`.trim());

      const before = state.lastNodeStates.get(node.id);
      if (before !== undefined && before !== word) addEvent(`Node ${node.id}: ${before} → ${word}.`);
      state.lastNodeStates.set(node.id, word);
    }
  }

  /** Keeps the nodes that have a whole-number id; the rest cannot be shown. */
  function validNodes(json) {
    if (!Array.isArray(json)) return null;
    return json.filter((node) => node && Number.isInteger(node.id) && node.id >= 0);
  }

  // ---- Fault injection ----------------------------------------------------

  async function runFault(card, action) {
    let path = `/nodes/${card.id}/${action}`;
    let what = `${action[0].toUpperCase()}${action.slice(1)} node ${card.id}`;
    if (action === "stall") {
      const ms = card.stallInput.value.trim();
      path += `?ms=${encodeURIComponent(ms)}`;
      what += ` for ${ms || "?"} ms`;
    }
    setBusy(card, true);
    setOutcome(dom.actionStatus, `${what}: sending…`, "pending");
    const reply = await request("POST", path, ACTION_TIMEOUT_MS);
    setBusy(card, false);
    const text = reply.ok ? `${what}: ${reply.status} OK` : `${what}: ${describeFailure(reply)}`;
    setOutcome(dom.actionStatus, text, reply.ok ? "ok" : "error");
    addEvent(text);
    refreshNow();
  }

  function setBusy(card, busy) {
    for (const button of card.buttons) button.disabled = busy;
  }

  // ---- Tenant lookup ------------------------------------------------------

  async function lookUpTenant(event) {
    event.preventDefault();
    const tenant = dom.tenant.value;
    if (tenant === "") {
      setOutcome(dom.lookupResult, "Type a tenant first.", "error");
      return;
    }
    setOutcome(dom.lookupResult, `Counting “${tenant}”…`, "pending");
    const reply = await request("GET", `/items/${encodeURIComponent(tenant)}/count`, ACTION_TIMEOUT_MS);
    if (reply.ok && reply.json && typeof reply.json.counter === "number") {
      const count = reply.json.counter;
      const items = count === 1 ? "item" : "items";
      setOutcome(dom.lookupResult, `Tenant “${reply.json.tenant}” has ${formatNumber(count)} ${items}.`, "ok");
    } else {
      setOutcome(dom.lookupResult, `Could not count “${tenant}”: ${describeFailure(reply)}`, "error");
    }
  }

  // ---- Polling ------------------------------------------------------------

  async function refresh() {
    const [nodesReply, healthReply, metricsReply] = await Promise.all([
      request("GET", "/nodes", POLL_TIMEOUT_MS),
      request("GET", "/health", POLL_TIMEOUT_MS),
      request("GET", "/metrics", POLL_TIMEOUT_MS),
    ]);
    if (!nodesReply.reached && !healthReply.reached && !metricsReply.reached) {
      showUnreachable(nodesReply);
      return;
    }
    showReachable();
    const metrics = metricsReply.ok ? readMetrics(parsePrometheus(metricsReply.text)) : null;
    const nodes = nodesReply.ok ? validNodes(nodesReply.json) : null;
    showHealth(healthReply);
    if (nodes) {
      showNodes(nodes, metrics);
      showMaster(nodes, metrics);
    } else {
      // The cards keep their last values; say why they do not move.
      setText(dom.updated, `The node list did not load: ${describeFailure(nodesReply)}`);
    }
    if (metrics && metrics.accepted !== null) showIngestRate(metrics.accepted);
  }

  /** Refreshes now (or right after the refresh under way), then every POLL_MS. */
  function refreshNow() {
    const poll = state.poll;
    if (poll.running) {
      poll.again = true;
      return;
    }
    clearTimeout(poll.timer);
    poll.running = true;
    refresh()
      .catch((error) => setText(dom.updated, `The page failed to show the data: ${error}`))
      .finally(() => {
        poll.running = false;
        if (poll.again) {
          poll.again = false;
          refreshNow();
        } else {
          poll.timer = setTimeout(refreshNow, POLL_MS);
        }
      });
  }

  dom.lookup.addEventListener("submit", lookUpTenant);
  refreshNow();
})();
