// syncd dashboard: follow running syncs by polling /api/status. Names are set with
// textContent only, never as markup. When a pair's state changes (a run starts or ends, a
// pause), the page reloads: the server renders the history and the charts.
"use strict";
(function () {
  const url = document.body.dataset.poll;
  if (!url) return;
  const EVERY_MS = 1500;

  function rowOf(pair) {
    for (const row of document.querySelectorAll("tr[data-pair]")) {
      if (row.dataset.pair === pair) return row;
    }
    return null;
  }

  function update(data) {
    let reload = false;
    for (const p of data.pairs) {
      const row = rowOf(p.pair);
      if (!row) continue;
      if (row.dataset.key !== p.key) reload = true;
      const bar = row.querySelector(".live progress");
      const phase = row.querySelector(".live .phase");
      if (p.running) {
        bar.hidden = false;
        bar.max = Math.max(1, p.running.actions || 0);
        bar.value = p.running.done || 0;
        phase.textContent = p.running.actions
          ? p.running.done + "/" + p.running.actions + " actions"
          : p.running.phase;
      }
    }
    if (reload) window.location.reload();
  }

  async function poll() {
    try {
      const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (answer.ok) update(await answer.json());
      else if (answer.status === 401) window.location.reload(); // the daemon restarted: sessions are gone
    } catch (e) {
      // the daemon restarts or the network hiccups: try again at the next tick
    }
    window.setTimeout(poll, EVERY_MS);
  }
  window.setTimeout(poll, EVERY_MS);
})();
