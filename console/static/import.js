// Polls an import's progress (kept in the store, so a reload shows where it is) and reloads when it is over.
(function () {
  var job = document.getElementById("job");
  var shown = job && job.dataset.status;
  if (shown !== "checking" && shown !== "running") return;
  var url = job.dataset.progressUrl;
  function poll() {
    fetch(url, {credentials: "same-origin", cache: "no-store"}).then(function (r) { return r.json(); }).then(function (p) {
      if (p.status !== shown) { window.location.reload(); return; }
      var bar = document.getElementById("bar");
      bar.max = p.total; bar.value = p.done;
      document.getElementById("done").textContent = p.done;
      document.getElementById("total").textContent = p.total;
      var key = "phase" + p.phase.replace(/(^|\s)(\w)/g, function (_, _s, c) { return c.toUpperCase(); });
      document.getElementById("phase").textContent = job.dataset[key] || p.phase;
      setTimeout(poll, 400);
    }).catch(function () { setTimeout(poll, 1500); });
  }
  setTimeout(poll, 400);
})();
