// The main page: pick a task and an input, submit a job, follow its progress, show its results.
"use strict";

(() => {
  const { $, el, api, follow, fileUrl, sampleView, settingsText, MicRecorder } = soundlm;
  const TASK_NAMES = {
    continue: "Continue", generate: "Generate", tts: "Text to speech", asr: "Speech recognition",
    translate: "Translate", compress: "Compress", decompress: "Decompress", music: "Music",
  };
  const NUMBERS = ["seconds", "num_samples", "seed", "temperature_semantic", "temperature_coarse",
                   "temperature_fine", "guidance"];
  let info = null;
  let task = "continue";
  let current = null;  // the job being followed: {id, follower}
  let micTake = null;  // {blob, seconds}
  let recorder = null;

  function source() {
    return document.querySelector('input[name="source"]:checked').value;
  }

  function showTask(name) {
    task = name;
    for (const b of document.querySelectorAll("#tasks button")) b.setAttribute("aria-selected", b.dataset.task === name);
    for (const node of document.querySelectorAll("[data-for]")) {
      node.hidden = !node.dataset.for.split(" ").includes(name);
    }
    $("input-legend").textContent = { tts: "Voice (optional)", decompress: "Compressed file (.slmc)",
                                      continue: "Prompt" }[name] || "Audio";
    $("file-label").textContent = name === "decompress" ? ".slmc file" : "audio file";
    if (name === "decompress") document.querySelector('input[value="file"]').checked = true;
    else if (source() === "none" && name !== "tts") document.querySelector('input[value="bundled"]').checked = true;
    if (info) {
      const music = name === "music";
      $("seconds").max = music ? info.limits.max_music_seconds : info.limits.max_seconds;
      $("num_samples").max = music ? info.limits.max_music_samples : info.limits.max_samples;
    }
    const why = info && info.tasks[name];
    $("task-note").textContent = why ? `Not available on this server: ${why}.` : "";
    $("run").disabled = Boolean(why) || current !== null;
  }

  async function init() {
    info = await api("/api/info");
    const sim = info.speaker_similarity ? ` · speaker similarity off: ${info.speaker_similarity}` : "";
    const music = info.music_model ? ` · music ${info.music_model} · ${info.music_sample_rate} Hz, up to ` +
      `${info.limits.max_music_seconds} s` : "";
    $("model-info").textContent = `model ${info.model} · ${info.sample_rate} Hz · up to ` +
      `${info.limits.max_seconds} s, ${info.limits.max_samples} samples, ${info.limits.max_upload_mb} MB uploads` +
      `${music}${sim}`;
    $("max-captions").textContent = info.limits.max_captions;
    for (const name of NUMBERS) $(name).value = info.defaults[name];
    for (const id of ["language", "target"]) {
      for (const lang of info.palm_languages) $(id).append(el("option", { value: lang, text: lang }));
    }
    if (info.palm_languages.length > 1) $("target").value = info.palm_languages[1];
    for (const [name, label] of Object.entries(TASK_NAMES)) {
      const button = el("button", { type: "button", role: "tab", "data-task": name, text: label });
      if (info.tasks[name]) { button.classList.add("unavailable"); button.title = info.tasks[name]; }
      button.addEventListener("click", () => showTask(name));
      $("tasks").append(button);
    }
    showTask(task);
  }

  function form() {
    const data = new FormData();
    data.append("task", task);
    const src = task === "decompress" ? "file" : source();
    data.append("prompt", src === "bundled" ? "bundled" : "upload");
    for (const name of NUMBERS) data.append(name, $(name).value);
    data.append("acoustic_prompt", $("acoustic_prompt").checked);
    data.append("text", $("text").value);
    data.append("language", $("language").value || "en");
    data.append("target", $("target").value || "fr");
    data.append("speech", $("speech").checked);
    data.append("mode", $("mode").value);
    if (task === "music") {
      for (const line of $("captions").value.split("\n")) if (line.trim()) data.append("captions", line.trim());
    }
    if (src === "file" && $("file").files.length) data.append("audio", $("file").files[0]);
    if (src === "mic" && micTake) data.append("audio", micTake.blob, "microphone.wav");
    return data;
  }

  function setBusy(busy) {
    $("run").disabled = busy || Boolean(info.tasks[task]);
    $("cancel").disabled = !busy;
    $("progress").hidden = !busy;
  }

  function showError(message) {
    $("error").textContent = message || "";
    $("error").hidden = !message;
  }

  function onStatus(status) {
    $("bar-fill").style.width = `${Math.round(status.progress * 100)}%`;
    const where = status.state === "queued" ? `queued (${status.position ?? 0} ahead)` : status.stage;
    const batch = status.batch_size > 1 ? ` · batched with ${status.batch_size - 1} other job(s)` : "";
    $("stage").textContent = `${where} · ${Math.round(status.progress * 100)}%${batch}`;
  }

  async function run() {
    showError("");
    let status;
    try {
      status = await api("/api/jobs", { method: "POST", body: form() });
    } catch (e) {
      showError(e.message);
      return;
    }
    current = { id: status.id, follower: follow(status.id, onStatus) };
    setBusy(true);
    onStatus(status);
    try {
      status = await current.follower;
    } catch (e) {
      showError(`lost the job: ${e.message}`);
    }
    current = null;
    setBusy(false);
    if (status.state === "done") addResult(status);
    else if (status.state === "failed") showError(status.error);
    else if (status.state === "cancelled") showError(status.stage);
  }

  function addResult(status) {
    const r = status.result;
    const title = `${TASK_NAMES[status.task]} · ${new Date(status.created * 1000).toLocaleTimeString()} · ` +
                  `took ${status.seconds_running.toFixed(1)} s`;
    const card = el("article", { class: "result", "data-job": status.id }, el("h3", { text: title }));
    if (r.text !== null && r.text !== undefined) card.append(el("blockquote", { text: r.text || "(empty answer)" }));
    r.samples.forEach((s, i) => card.append(sampleView(status, s, i, r.speaker_similarity_note)));
    if (Object.keys(r.stats).length) {
      card.append(el("table", { class: "stats" },
        ...Object.entries(r.stats).map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: v })))));
    }
    for (const f of r.files.filter((f) => f.kind === "data")) {
      card.append(el("a", { href: fileUrl(status.id, f.name), download: f.name, class: "download",
                            text: `download ${f.label}` }));
    }
    card.append(el("details", {}, el("summary", { text: "settings" }), el("pre", { text: settingsText(r.settings) })));
    $("no-results").hidden = true;
    $("results").prepend(card);
  }

  async function toggleRecording() {
    showError("");
    if (recorder === null) {
      recorder = new MicRecorder();
      try {
        await recorder.start();
      } catch (e) {
        recorder = null;
        showError(`microphone: ${e.message}`);
        return;
      }
      document.querySelector('input[value="mic"]').checked = true;
      $("record").textContent = "■ stop";
      $("mic-status").textContent = "recording…";
      return;
    }
    micTake = await recorder.stop();
    recorder = null;
    $("record").textContent = "● record";
    $("mic-status").textContent = `${micTake.seconds.toFixed(1)} s recorded`;
    $("mic-player").src = URL.createObjectURL(micTake.blob);
    $("mic-player").hidden = false;
  }

  $("run").addEventListener("click", run);
  $("cancel").addEventListener("click", () => {
    if (current) api(`/api/jobs/${current.id}/cancel`, { method: "POST" }).catch((e) => showError(e.message));
  });
  $("record").addEventListener("click", toggleRecording);
  $("file").addEventListener("change", () => { document.querySelector('input[value="file"]').checked = true; });
  init().catch((e) => showError(`cannot reach the server: ${e.message}`));
})();
