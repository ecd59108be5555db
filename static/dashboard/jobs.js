// A bulk job's progress page (templates/admin/memories/bulkjob/job.html): polls the job's
// JSON status endpoint about once a second, moves the progress bar, and reloads the page
// when the job has ended so the server renders its result. Without script the page
// refreshes itself (a <noscript> meta refresh), so the bar still moves.
(function () {
  "use strict";
  const box = document.getElementById("mw-job");
  if (!box || box.dataset.finished === "true") { return; }
  const bar = document.getElementById("mw-job-progress");
  const percent = document.getElementById("mw-job-percent");
  const count = document.getElementById("mw-job-count");
  const state = document.getElementById("mw-job-state");
  let delay = 1000;

  function show(status) {
    bar.max = Math.max(status.total, 1);
    bar.value = status.state === "done" ? bar.max : status.done;
    bar.textContent = status.percent + "%";
    percent.textContent = status.percent + "%";
    count.textContent = status.count_text;
    state.textContent = status.state_label;
    box.className = "mw-job mw-job-" + status.state;
  }

  function poll() {
    fetch(box.dataset.statusUrl, {credentials: "same-origin", cache: "no-store",
                                  headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (status) {
        show(status);
        delay = 1000;
        if (status.finished) {
          window.location.reload();  // the result, rendered by the server
          return;
        }
        window.setTimeout(poll, delay);
      })
      .catch(function () {  // a restart or a dropped connection: try again, less often
        delay = Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
      });
  }

  window.setTimeout(poll, 500);
}());
