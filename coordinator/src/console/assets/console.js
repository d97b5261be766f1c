// opsfleet console: the live event list and the polling of an action's results.
// Event data is shown with textContent only, never parsed as HTML.
"use strict";

(function () {
  var FINAL = { completed: 1, failed: 1, rejected: 1, expired: 1 };
  var MAX_LINES = 500;

  function eventLine(d) {
    var t = d.time_unix_ms ? new Date(d.time_unix_ms).toISOString().replace(".000Z", "Z") : "-";
    return "#" + d.seq + " " + t + " " + d.host + " " + d.module + " " + d.kind;
  }

  function startEvents(list) {
    var status = document.getElementById("event-status");
    var src = list.getAttribute("data-src");
    var es = new EventSource(src);
    es.onopen = function () { status.textContent = "live"; };
    es.onerror = function () { status.textContent = "reconnecting…"; };
    es.addEventListener("ops", function (msg) {
      var d;
      try { d = JSON.parse(msg.data); } catch (e) { return; }
      var li = document.createElement("li");
      li.setAttribute("data-test", "event");
      li.setAttribute("data-seq", String(d.seq));
      li.textContent = eventLine(d);
      list.insertBefore(li, list.firstChild);
      while (list.children.length > MAX_LINES) { list.removeChild(list.lastChild); }
    });
  }

  function pollResults(box) {
    var ids = box.getAttribute("data-ids");
    if (!ids) { return; }
    var tries = 0;
    function tick() {
      tries += 1;
      fetch("/console/api/commands?ids=" + encodeURIComponent(ids), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : { commands: [] }; })
        .then(function (body) {
          var open = 0;
          var rows = box.querySelectorAll("tr[data-test=result-row]");
          rows.forEach(function (row) {
            var id = row.getAttribute("data-command");
            var c = (body.commands || []).filter(function (x) { return x.id === id; })[0];
            var cell = row.querySelector("[data-test=result]");
            var detail = row.querySelector("[data-test=detail]");
            if (c) {
              cell.textContent = c.state;
              detail.textContent = c.detail || "";
              cell.className = FINAL[c.state] ? "st-" + c.state : "pending";
            }
            if (!c || !FINAL[c.state]) { open += 1; }
          });
          if (open > 0 && tries < 300) { setTimeout(tick, 1000); }
        })
        .catch(function () { if (tries < 300) { setTimeout(tick, 2000); } });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var list = document.getElementById("event-list");
    if (list) { startEvents(list); }
    var box = document.getElementById("action-result");
    if (box) { pollResults(box); }
  });
})();
