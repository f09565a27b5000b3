// Shared by the main page and the A/B page: API calls, following a job, the microphone, result cards.
"use strict";

const soundlm = (() => {
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  // fetch + JSON; a non-2xx answer throws an Error carrying the server's one-line `detail`.
  async function api(path, options = {}) {
    const response = await fetch(path, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const retry = response.headers.get("Retry-After");
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
      const error = new Error(`${response.status}: ${detail}${retry ? ` (retry after ${retry} s)` : ""}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // Follow a job with server-sent events; onUpdate(status) on every change. Resolves with the last status.
  function follow(jobId, onUpdate) {
    let source;
    const promise = new Promise((resolve, reject) => {
      source = new EventSource(`/api/jobs/${jobId}/events`);
      source.onmessage = (event) => {
        const status = JSON.parse(event.data);
        onUpdate(status);
        if (["done", "failed", "cancelled"].includes(status.state)) {
          source.close();  // before the server ends the stream, or EventSource would reconnect
          resolve(status);
        }
      };
      source.onerror = () => {
        source.close();
        // The stream broke (server restarted?): ask once more, by polling.
        api(`/api/jobs/${jobId}`).then((s) => { onUpdate(s); resolve(s); }, reject);
      };
    });
    promise.close = () => source && source.close();
    return promise;
  }

  function fileUrl(jobId, name) {
    return `/api/jobs/${jobId}/files/${encodeURIComponent(name)}`;
  }

  // A sample: player, waveform + spectrogram, speaker similarity (music: its caption), download link.
  function sampleView(status, sample, index, note) {
    const url = fileUrl(status.id, sample.audio);
    let sim = `speaker similarity: ${note || "not computed"}`;
    if (sample.caption) sim = `“${sample.caption}”`;
    else if (sample.speaker_similarity !== null && sample.speaker_similarity !== undefined) {
      sim = `speaker similarity to the prompt: ${sample.speaker_similarity.toFixed(2)}`;
    }
    return el("div", { class: "sample" },
      el("div", { class: "sample-head" },
        el("strong", { text: `#${index + 1}` }),
        el("span", { class: "muted", text: `${sample.seconds.toFixed(2)} s` }),
        el("span", { class: "sim", text: sim }),
        el("a", { href: url, download: `${status.id}_${sample.audio}`, text: "download wav" })),
      el("audio", { controls: "", preload: "metadata", src: url, "data-job": status.id, "data-file": sample.audio }),
      sample.image ? el("img", { src: fileUrl(status.id, sample.image), alt: "waveform and log-mel spectrogram",
                                 loading: "lazy" }) : null);
  }

  function settingsText(settings) {
    return Object.entries(settings).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join("\n");
  }

  // Microphone: raw samples through an AudioWorklet, written as a 16-bit mono WAV (any server can read it).
  class MicRecorder {
    async start() {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      this.context = new AudioContext();
      await this.context.audioWorklet.addModule("/static/recorder-worklet.js");
      this.chunks = [];
      this.source = this.context.createMediaStreamSource(this.stream);
      this.node = new AudioWorkletNode(this.context, "soundlm-recorder");
      this.node.port.onmessage = (event) => this.chunks.push(event.data);
      this.source.connect(this.node);
    }

    async stop() {
      this.source.disconnect();
      this.node.disconnect();
      this.stream.getTracks().forEach((t) => t.stop());
      const rate = this.context.sampleRate;
      await this.context.close();
      const length = this.chunks.reduce((n, c) => n + c.length, 0);
      const samples = new Float32Array(length);
      let at = 0;
      for (const c of this.chunks) { samples.set(c, at); at += c.length; }
      return { blob: wavBlob(samples, rate), seconds: length / rate };
    }
  }

  function wavBlob(samples, rate) {
    const buffer = new ArrayBuffer(44 + samples.length * 2);
    const view = new DataView(buffer);
    const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
    text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
    text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true);
    view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, samples.length * 2, true);
    for (let i = 0; i < samples.length; i++) {
      const x = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(44 + i * 2, x < 0 ? x * 0x8000 : x * 0x7fff, true);
    }
    return new Blob([buffer], { type: "audio/wav" });
  }

  return { $, el, api, follow, fileUrl, sampleView, settingsText, MicRecorder };
})();
