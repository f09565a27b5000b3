// A/B listening: one job with two samples (a continuation of the bundled prompt, or music of one caption), shown
// as A and B; the choice goes to /api/preferences.
"use strict";

(() => {
  const { $, api, follow, sampleView } = soundlm;
  let pair = null;  // the finished job's status
  let current = null;
  let recorded = 0;
  let kind = "continue";
  let info = null;

  function showKind(name) {
    kind = name;
    for (const b of document.querySelectorAll("#kinds button")) b.setAttribute("aria-selected", b.dataset.kind === name);
    for (const node of document.querySelectorAll("[data-kind-only]")) node.hidden = node.dataset.kindOnly !== name;
    const why = info && info.tasks[name];
    $("kind-note").textContent = why ? `Not available on this server: ${why}.` : "";
    $("new-pair").disabled = Boolean(why) || current !== null;
  }

  function showError(message) {
    $("error").textContent = message || "";
    $("error").hidden = !message;
  }

  async function newPair() {
    showError("");
    $("pair").replaceChildren();
    $("choices").hidden = true;
    const data = new FormData();
    data.append("task", kind);
    if (kind === "music") data.append("captions", $("caption").value.trim());
    else data.append("prompt", "bundled");
    data.append("seconds", $("seconds").value);
    data.append("num_samples", "2");
    data.append("seed", $("seed").value);
    let status;
    try {
      status = await api("/api/jobs", { method: "POST", body: data });
    } catch (e) {
      showError(e.message);
      return;
    }
    $("new-pair").disabled = true;
    $("cancel").disabled = false;
    $("progress").hidden = false;
    current = status.id;
    status = await follow(status.id, (s) => {
      $("bar-fill").style.width = `${Math.round(s.progress * 100)}%`;
      $("stage").textContent = s.state === "queued" ? "queued" : s.stage;
    }).catch((e) => ({ state: "failed", error: e.message }));
    current = null;
    showKind(kind);
    $("cancel").disabled = true;
    $("progress").hidden = true;
    if (status.state !== "done") {
      showError(status.error || status.stage);
      return;
    }
    pair = status;
    const [a, b] = status.result.samples;
    const note = status.result.speaker_similarity_note;
    $("pair").append(sampleView(status, a, 0, note), sampleView(status, b, 1, note));
    $("pair").querySelectorAll(".sample-head strong").forEach((n, i) => { n.textContent = i ? "B" : "A"; });
    $("choices").hidden = false;
    $("seed").value = Number($("seed").value) + 1;  // the next pair is new
  }

  async function choose(choice) {
    const [a, b] = pair.result.samples;
    try {
      await api("/api/preferences", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ job: pair.id, a: a.audio, b: b.audio, choice }),
      });
      recorded += 1;
      $("recorded").textContent = `${recorded} preference(s) recorded.`;
      newPair();
    } catch (e) {
      showError(e.message);
    }
  }

  api("/api/info").then((answer) => {
    info = answer;
    $("model-info").textContent = `model ${info.model}` + (info.music_model ? ` · music ${info.music_model}` : "");
    for (const b of document.querySelectorAll("#kinds button")) {
      if (info.tasks[b.dataset.kind]) { b.classList.add("unavailable"); b.title = info.tasks[b.dataset.kind]; }
    }
    showKind(kind);
    if (!info.preferences) {
      $("pref-note").textContent = "This server does not record preferences: start it with " +
        "`soundlm serve --preferences FILE.jsonl`. You can still listen.";
      $("pref-note").hidden = false;
      document.querySelectorAll("[data-choice]").forEach((b) => { b.disabled = true; });
    }
  });
  document.querySelectorAll("#kinds button").forEach((b) => b.addEventListener("click", () => showKind(b.dataset.kind)));
  $("new-pair").addEventListener("click", newPair);
  $("cancel").addEventListener("click", () => current && api(`/api/jobs/${current}/cancel`, { method: "POST" }));
  $("skip").addEventListener("click", newPair);
  document.querySelectorAll("[data-choice]").forEach((b) => b.addEventListener("click", () => choose(b.dataset.choice)));
})();
