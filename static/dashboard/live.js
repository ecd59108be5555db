// The dashboard's live feed: /ws/v1/live with the browser's session (same origin), an
// "events" subscription for the chosen namespace, each event prepended to the list.
(function () {
  "use strict";
  const feed = document.getElementById("mw-feed");
  const status = document.getElementById("mw-live-status");
  if (!feed) { return; }
  const namespace = feed.dataset.namespace;
  let retry = 1000;

  function text(tag, value, className) {
    const element = document.createElement(tag);
    element.textContent = value;
    if (className) { element.className = className; }
    return element;
  }

  function show(event) {
    const row = document.createElement("div");
    row.className = "mw-event mw-event-" + event.event;
    const when = (event.at || new Date().toISOString()).replace("T", " ").slice(0, 19);
    row.appendChild(text("span", when + "  ", "mw-muted"));
    row.appendChild(text("strong", event.event));
    row.appendChild(text("span", "  by " + (event.agent_id || event.actor || "?") + "  "));
    const memories = event.memories || [];
    const first = (memories[0] || {}).row || {};  // created/updated: {id, row}; others: {id}
    const summary = first.content ? first.content.slice(0, 140)
      : memories.length + " memor" + (memories.length === 1 ? "y" : "ies");
    row.appendChild(text("span", summary, "mw-event-content"));
    feed.insertBefore(row, feed.firstChild);
    while (feed.childNodes.length > 500) { feed.removeChild(feed.lastChild); }
  }

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
        show(data);
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
