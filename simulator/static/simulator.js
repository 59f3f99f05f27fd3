// The browser simulator's page: start a conversation, send turns, show what each turn did. Text only (textContent),
// never HTML built from what the agent or the webhook said.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let conversation = null;
  const api = location.pathname.replace(/\/$/, "") + "/api/conversations";

  function note(text) { add("note", text); }
  function add(kind, text) {
    const li = document.createElement("li");
    li.className = kind;
    li.textContent = text;
    $("messages").appendChild(li);
    li.scrollIntoView({block: "end"});
  }
  function setBusy(busy) {
    for (const id of ["input", "send", "kind"]) $(id).disabled = busy || !conversation;
    $("status").textContent = busy ? "…" : "";
  }
  async function post(url, body) {
    const response = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                       body: JSON.stringify(body)});
    const data = await response.json().catch(() => ({error: "HTTP " + response.status}));
    if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
    return data;
  }
  function show(turn) {
    for (const m of turn.messages) add("agent", m);
    for (const p of turn.payloads) add("agent", "[payload] " + JSON.stringify(p));
    $("flow").textContent = turn.flow || "—";
    $("page").textContent = turn.page || "—";
    $("intent").textContent = turn.intent ? turn.intent + " (" + turn.confidence + ")" : "—";
    $("events").textContent = turn.events.length ? turn.events.join(", ") : "—";
    $("audio").textContent = turn.audio;
    const rows = $("params").tBodies[0];
    rows.textContent = "";
    for (const key of Object.keys(turn.params).sort()) {
      const tr = rows.insertRow();
      tr.dataset.name = key;
      if (turn.changed.includes(key)) tr.className = "changed";
      tr.insertCell().textContent = key;
      tr.insertCell().textContent = JSON.stringify(turn.params[key]);
    }
    const hooks = $("webhooks");
    hooks.textContent = "";
    for (const call of turn.webhooks) {
      const li = document.createElement("li");
      const title = document.createElement("div");
      title.className = "call" + (call.error ? " failed" : "");
      title.textContent = call.tag + " → " + (call.error || call.status);
      li.appendChild(title);
      for (const [label, value] of [["request", call.request], ["response", call.response]]) {
        const details = document.createElement("details");
        const summary = document.createElement("summary");
        summary.textContent = label;
        const pre = document.createElement("pre");
        pre.textContent = JSON.stringify(value, null, 2);
        details.append(summary, pre);
        li.appendChild(details);
      }
      hooks.appendChild(li);
    }
    if (turn.ended) {
      note("— conversation ended: " + turn.end_reason + " —");
      conversation = null;
    }
  }

  $("start-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("messages").textContent = "";
    conversation = null;
    setBusy(true);
    try {
      const data = await post(api, {lang: $("lang").value, caller_id: $("caller-id").value});
      conversation = data.id;
      document.documentElement.lang = data.lang;
      note("conversation started (" + data.lang + ")");
      for (const turn of data.turns) show(turn);
    } catch (error) {
      note("error: " + error.message);
    }
    setBusy(false);
    $("input").focus();
  });

  $("say-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!conversation) return;
    const text = $("input").value;
    const kind = $("kind").value;
    add("user", text.trim() ? (kind === "text" ? text : "[" + kind + "] " + text) : "[no input]");
    $("input").value = "";
    setBusy(true);
    try {
      show(await post(api + "/" + encodeURIComponent(conversation) + "/turns",
                      text.trim() ? {[kind]: text} : {}));
    } catch (error) {
      note("error: " + error.message);
    }
    setBusy(false);
    $("input").focus();
  });
})();
