// The dashboard's live feed: /ws/v1/live with the browser's session (same origin), an
// "events" subscription for the chosen namespace, each event prepended to the list.
//
// Filters (event types, agent) and the pause work on the stream here, in the browser:
// the protocol's "events" request names a namespace only (docs/live.md). Every event
// is kept as a row (hidden when the filters leave it out), so changing a filter shows
// what already arrived. Paused, events wait in a buffer of at most data-buffer-cap
// (the oldest dropped beyond it, and counted) and are shown on resume.
//
// Event content is untrusted (agents write it): text goes in with textContent only,
// links are built from the admin's URL with the id encoded.
(function () {
  "use strict";
  const feed = document.getElementById("mw-feed");
  if (!feed) { return; }
  const status = document.getElementById("mw-live-status");
  const filters = document.getElementById("mw-live-filters");
  const agentSelect = document.getElementById("mw-live-agent");
  const pauseButton = document.getElementById("mw-live-pause");
  const bufferedNote = document.getElementById("mw-live-buffered");
  const emptyNote = document.getElementById("mw-feed-empty");
  const namespace = feed.dataset.namespace;
  const memoryUrl = feed.dataset.memoryUrl;
  const PLACEHOLDER = "00000000-0000-0000-0000-000000000000";
  const BUFFER_CAP = parseInt(feed.dataset.bufferCap, 10) || 500;
  const SHOWN_CAP = 500;  // rows kept on the page, hidden ones included
  const EVENTS = ["created", "updated", "deleted", "recalled"];
  const LINKED = 3;  // memories linked per event; the rest are counted
  const agentsOf = new WeakMap();  // row -> Set of agent ids
  let paused = false;
  let buffer = [];
  let dropped = 0;
  let retry = 1000;

  function text(tag, value, className) {
    const element = document.createElement(tag);
    element.textContent = value;
    if (className) { element.className = className; }
    return element;
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  // The agents an event concerns: the acting key's agent and the memories' agents.
  function agentsOfEvent(event) {
    const found = new Set();
    if (event.agent_id) { found.add(String(event.agent_id)); }
    for (const memory of event.memories || []) {
      if (memory.row && memory.row.agent_id) { found.add(String(memory.row.agent_id)); }
    }
    return found;
  }

  function chosen() {
    const events = new Set();
    for (const box of filters.querySelectorAll("input[name=event]")) {
      if (box.checked) { events.add(box.value); }
    }
    return {events: events, agent: agentSelect.value};
  }

  function passes(kind, agents, wanted) {
    return wanted.events.has(kind) && (!wanted.agent || agents.has(wanted.agent));
  }

  function learnAgents(agents) {
    const known = new Set(Array.from(agentSelect.options, (option) => option.value));
    for (const agent of agents) {
      if (!known.has(agent)) {
        const option = text("option", agent);
        option.value = agent;
        agentSelect.appendChild(option);
      }
    }
  }

  function memoryLink(id, label) {
    const link = text("a", label, "mw-event-memory");
    link.href = memoryUrl.replace(PLACEHOLDER, encodeURIComponent(id));
    return link;
  }

  // What the event did to which memories: links for memories that still exist, words
  // for deletions and erasures (their pages are gone, and an erasure names nothing).
  function summary(event, kind) {
    const memories = event.memories || [];
    const element = text("span", "", "mw-event-content");
    if (kind === "deleted") {
      element.textContent = plural(memories.length, "memory", "memories") +
        (event.erasure ? " erased (erasure request)" : " deleted");
      return element;
    }
    memories.slice(0, LINKED).forEach(function (memory, i) {
      if (i > 0) { element.appendChild(document.createTextNode(" · ")); }
      const row = memory.row || {};  // created/updated: {id, row}; recalled: {id}
      const label = typeof row.content === "string" && row.content
        ? row.content.slice(0, 140) : "memory " + String(memory.id).slice(0, 8) + "…";
      element.appendChild(memoryLink(String(memory.id), label));
    });
    if (memories.length > LINKED) {
      element.appendChild(document.createTextNode(" and " + (memories.length - LINKED) + " more"));
    }
    return element;
  }

  function render(event) {
    const kind = EVENTS.indexOf(event.event) >= 0 ? event.event : "other";
    const row = document.createElement("div");
    row.className = "mw-event mw-event-" + kind;
    row.dataset.event = kind;
    const when = String(event.at || new Date().toISOString()).replace("T", " ").slice(0, 19);
    row.appendChild(text("span", when + "  ", "mw-muted mw-event-time"));
    row.appendChild(text("strong", kind));
    row.appendChild(text("span", "  by " + (event.agent_id || event.actor || "?") + "  ",
                         "mw-event-actor"));
    row.appendChild(summary(event, kind));
    agentsOf.set(row, agentsOfEvent(event));
    return row;
  }

  function applyTo(row, wanted) {
    row.hidden = !passes(row.dataset.event, agentsOf.get(row) || new Set(), wanted);
  }

  function refreshNotes() {
    const wanted = chosen();
    const rows = feed.children.length;
    const visible = feed.querySelectorAll(".mw-event:not([hidden])").length;
    emptyNote.hidden = visible > 0;
    emptyNote.textContent = rows === 0 ? "No event yet: they appear here as agents store, " +
      "change, delete and recall memories."
      : plural(rows, "event", "events") + " received, none that the filters let through.";
    if (!paused) {
      bufferedNote.textContent = "";
      return;
    }
    const waiting = buffer.filter((event) => passes(
      EVENTS.indexOf(event.event) >= 0 ? event.event : "other", agentsOfEvent(event), wanted)).length;
    bufferedNote.textContent = "Paused: " + plural(waiting, "new event", "new events") +
      (dropped ? " (" + plural(dropped, "older one", "older ones") + " dropped: at most " +
       BUFFER_CAP + " are kept)" : "");
  }

  function show(event) {
    const row = render(event);
    applyTo(row, chosen());
    feed.insertBefore(row, feed.firstChild);
    while (feed.children.length > SHOWN_CAP) { feed.removeChild(feed.lastChild); }
  }

  function receive(event) {
    learnAgents(agentsOfEvent(event));
    if (paused) {
      buffer.push(event);
      if (buffer.length > BUFFER_CAP) {
        buffer.shift();
        dropped += 1;
      }
    } else {
      show(event);
    }
    refreshNotes();
  }

  function setPaused(value) {
    paused = value;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
    if (!paused) {
      const waiting = buffer;
      buffer = [];
      dropped = 0;
      waiting.forEach(show);  // oldest first, so the newest ends on top
    }
    refreshNotes();
  }

  // The filters are in the address too (?event=…&agent=…), so the view can be linked.
  function filtersChanged() {
    const wanted = chosen();
    for (const row of feed.children) { applyTo(row, wanted); }
    const params = new URLSearchParams({namespace: namespace});
    if (wanted.events.size < EVENTS.length) {
      for (const name of EVENTS) { if (wanted.events.has(name)) { params.append("event", name); } }
    }
    if (wanted.agent) { params.set("agent", wanted.agent); }
    window.history.replaceState(null, "", window.location.pathname + "?" + params.toString());
    refreshNotes();
  }

  filters.addEventListener("change", filtersChanged);
  filters.addEventListener("submit", function (event) { event.preventDefault(); filtersChanged(); });
  pauseButton.addEventListener("click", function () { setPaused(!paused); });
  refreshNotes();

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + "/ws/v1/live");
    socket.onmessage = function (message) {
      const data = JSON.parse(message.data);
      if (data.type === "ready") {
        socket.send(JSON.stringify({type: "events", id: "feed", namespace: namespace}));
      } else if (data.type === "watching") {
        status.textContent = "live";
        status.className = "mw-status-ok";
        retry = 1000;
      } else if (data.type === "event") {
        receive(data);
      } else if (data.type === "error") {
        status.textContent = "error: " + data.error.message;
        status.className = "mw-status-bad";
      }
    };
    socket.onclose = function (event) {
      status.textContent = "disconnected (" + event.code + "), reconnecting…";
      status.className = "mw-status-bad";
      if (event.code === 4401 || event.code === 4403) { status.textContent = "not allowed (" + event.code + ")"; return; }
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }
  connect();
}());
