// The localai playground: plain JavaScript, no dependencies, no build step. Every request goes to
// this server's own API; the API key (kept in this page's localStorage) travels as an
// `Authorization: Bearer` header, never in a URL.
"use strict";
(() => {
  const KEY_STORE = "localai.apiKey";
  const $ = (id) => document.getElementById(id);
  const el = (tag, props, ...children) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "class") node.className = value;
      else if (name in node) node[name] = value;
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const seconds = (ms) => (ms / 1000).toFixed(2) + " s";

  let apiKey = "";
  try { apiKey = localStorage.getItem(KEY_STORE) || ""; } catch (_) { /* storage off: keep it in memory */ }
  let models = [];

  // ---- the API -------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  async function api(path, { json, body, signal } = {}) {
    const headers = {};
    if (apiKey) headers.Authorization = "Bearer " + apiKey;
    if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
    let response;
    try {
      response = await fetch(path, { method: body ? "POST" : "GET", headers, body, signal, cache: "no-store" });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError("The server could not be reached (" + err.message + ").", 0);
    }
    if (!response.ok) {  // the API's own message: {"error": {"message": ...}}
      let message = `${response.status} ${response.statusText}`;
      try {
        const data = await response.json();
        if (data && data.error && data.error.message) message = data.error.message;
      } catch (_) { /* not JSON: keep the status line */ }
      throw new ApiError(message, response.status);
    }
    return response;
  }

  // Server-sent events of a streamed response, as parsed JSON payloads, until [DONE].
  async function* sseEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
        let match;
        while ((match = /\r?\n\r?\n/.exec(buffer))) {
          const block = buffer.slice(0, match.index);
          buffer = buffer.slice(match.index + match[0].length);
          const data = block.split(/\r?\n/).filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
          if (!data) continue;
          if (data === "[DONE]") return;
          yield JSON.parse(data);
        }
        if (done) return;
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  function show(id, text) {
    const node = $(id);
    node.textContent = text || "";
    node.hidden = !text;
  }
  function fail(id, err) {
    if (err && err.name === "AbortError") return;
    show(id, (err && err.message) || String(err));
  }
  async function running(button, errorId, work) {
    button.disabled = true;
    show(errorId, "");
    try { await work(); } catch (err) { fail(errorId, err); } finally { button.disabled = false; }
  }
  const modelOf = (selectId, what) => {
    const model = $(selectId).value;
    if (!model) throw new ApiError(`No installed model can ${what}: install one in the Models tab.`, 0);
    return model;
  };

  // ---- tabs ----------------------------------------------------------------------------------
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  function selectTab(tab, byUser) {
    for (const other of tabs) {
      const on = other === tab;
      other.setAttribute("aria-selected", String(on));
      other.tabIndex = on ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !on;
    }
    if (byUser) {  // the address remembers the tab (a link or a reload opens it again)
      tab.focus();
      history.replaceState(null, "", "#" + tab.id.slice(4));
    }
    if (tab.id === "tab-models") loadGallery(false);
  }
  for (const tab of tabs) tab.addEventListener("click", () => selectTab(tab, true));
  $("tabs").addEventListener("keydown", (event) => {
    const shown = tabs.filter((tab) => !tab.hidden);
    let i = shown.indexOf(document.activeElement);
    if (i < 0) return;
    if (event.key === "ArrowRight") i = (i + 1) % shown.length;
    else if (event.key === "ArrowLeft") i = (i - 1 + shown.length) % shown.length;
    else if (event.key === "Home") i = 0;
    else if (event.key === "End") i = shown.length - 1;
    else return;
    event.preventDefault();
    selectTab(shown[i], true);
  });
  const tabFromHash = () => {
    const tab = $("tab-" + location.hash.slice(1));
    return tab && tab.getAttribute("role") === "tab" && !tab.hidden ? tab : null;
  };

  // ---- models --------------------------------------------------------------------------------
  const CAPABILITIES = [["text", "Text generation (chat)"], ["embeddings", "Embeddings"],
    ["transcription", "Transcription"], ["images", "Images"]];

  async function loadModels() {
    show("status", "");
    try {
      models = (await (await api("/webui/models")).json()).data;
    } catch (err) {
      models = [];
      fail("status", err);
    }
    for (const select of document.querySelectorAll("select[data-cap]")) {
      const previous = select.value;
      const fit = models.filter((m) => m.capabilities.includes(select.dataset.cap));
      select.replaceChildren(...fit.map((m) => el("option", { value: m.id, textContent: m.id })));
      if (!fit.length) select.append(el("option", { value: "", textContent: "(no model can do this)" }));
      if (fit.some((m) => m.id === previous)) select.value = previous;
    }
    const imagesTab = $("tab-images");
    imagesTab.hidden = !models.some((m) => m.capabilities.includes("images"));
    if (imagesTab.hidden && imagesTab.getAttribute("aria-selected") === "true") selectTab($("tab-chat"), false);
    const wanted = tabFromHash();
    if (wanted && wanted.getAttribute("aria-selected") !== "true") selectTab(wanted, false);
    renderInstalled();
  }

  function renderInstalled() {
    const box = el("div", { class: "caps" });
    for (const [cap, title] of CAPABILITIES) {
      const fit = models.filter((m) => m.capabilities.includes(cap));
      if (fit.length) box.append(el("div", { "data-cap": cap }, el("h3", { textContent: title }), modelList(fit)));
    }
    const none = models.filter((m) => !m.capabilities.length);
    if (none.length) box.append(el("div", {}, el("h3", { textContent: "Unknown backend" }), modelList(none)));
    if (!models.length) box.append(el("p", { textContent: "No models are installed." }));
    $("models-installed").replaceChildren(box);
  }
  const modelList = (list) => el("ul", {}, ...list.map((m) => el("li", {}, el("strong", { textContent: m.id }),
    ` (${m.backend})` + (m.description ? " — " + m.description : ""))));

  let gallery = null;
  const galleryItems = new Map();  // id -> <li>, kept while filtering so install progress survives
  async function loadGallery(force) {
    if (gallery && !force) return;
    show("models-error", "");
    try {
      gallery = await (await api("/models/available")).json();
    } catch (err) {
      fail("models-error", err);
      return;
    }
    galleryItems.clear();
    for (const item of gallery) galleryItems.set(item.id, galleryItem(item));
    filterGallery();
  }
  function filterGallery() {
    const words = $("gallery-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = (gallery || []).filter((item) => {
      const text = [item.name, item.description, ...(item.tags || [])].join(" ").toLowerCase();
      return words.every((word) => text.includes(word));
    });
    $("gallery-list").replaceChildren(...shown.map((item) => galleryItems.get(item.id)));
  }
  function galleryItem(item) {
    const button = el("button", { type: "button", textContent: item.installed ? "Installed" : "Install",
      disabled: !!item.installed, "aria-label": `Install ${item.name}` });
    const li = el("li", { "data-id": item.id },
      el("div", { class: "head" }, el("strong", { textContent: item.name }), button));
    if (item.description) li.append(el("p", { textContent: item.description }));
    button.addEventListener("click", () => install(item, li, button));
    return li;
  }
  async function install(item, li, button) {
    button.disabled = true;
    const bar = el("progress", { max: 100, value: 0, "aria-label": `Installing ${item.name}` });
    const status = el("p", { textContent: "Starting…", role: "status" });
    li.append(bar, status);
    try {
      const job = await (await api("/models/apply", { json: { id: item.id } })).json();
      for (;;) {
        const state = await (await api("/models/jobs/" + encodeURIComponent(job.uuid))).json();
        bar.value = state.progress;
        const size = state.downloaded_size ? ` ${state.downloaded_size} of ${state.file_size}` : "";
        status.textContent = `${state.message || "working"}${size} (${Math.round(state.progress)} %)`;
        if (state.processed) {
          if (state.error) throw new ApiError(state.error, 0);
          break;
        }
        await sleep(700);
      }
      item.installed = true;
      button.textContent = "Installed";
      status.textContent = "Installed.";
      bar.remove();
      await loadModels();
    } catch (err) {
      bar.remove();
      status.className = "error";
      status.textContent = err.message;
      button.disabled = false;
    }
  }

  // ---- chat ----------------------------------------------------------------------------------
  const turns = [];  // the conversation sent with each request (the system prompt is added then)
  let controller = null;

  function addMessage(role, text) {
    const node = el("div", { class: "msg " + role, "data-role": role }, el("span", { class: "text", textContent: text }));
    $("chat-log").append(node);
    node.scrollIntoView({ block: "end" });
    return node;
  }
  function setText(node, text) {
    node.querySelector(".text").textContent = text;
    const log = $("chat-log");
    log.scrollTop = log.scrollHeight;
  }
  function setBusy(on) {
    $("chat-send").disabled = on;
    $("chat-stop").disabled = !on;
  }
  function chatStats(usage, started, first, ended, finish) {
    const parts = [];
    if (usage) parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
    if (first !== null) parts.push(`first token after ${seconds(first - started)}`);
    const n = usage ? usage.completion_tokens : 0;
    if (n > 1 && first !== null && ended > first) parts.push(`${((n - 1) / ((ended - first) / 1000)).toFixed(1)} tokens/s`);
    else if (n && ended > started) parts.push(`${(n / ((ended - started) / 1000)).toFixed(1)} tokens/s`);
    parts.push(`${seconds(ended - started)} in all`);
    if (finish) parts.push(`finish: ${finish}`);
    return parts.join(" · ");
  }

  async function sendChat() {
    const input = $("chat-input");
    const prompt = input.value;
    if (!prompt.trim() || controller) return;
    show("chat-error", "");
    let model;
    try { model = modelOf("chat-model", "chat"); } catch (err) { fail("chat-error", err); return; }
    const stream = $("chat-stream").checked;
    const system = $("chat-system").value.trim();
    turns.push({ role: "user", content: prompt });
    const userNode = addMessage("user", prompt);
    input.value = "";
    const body = { model, stream, messages: (system ? [{ role: "system", content: system }] : []).concat(turns) };
    const temperature = parseFloat($("chat-temperature").value);
    const maxTokens = parseInt($("chat-max-tokens").value, 10);
    if (Number.isFinite(temperature)) body.temperature = temperature;
    if (Number.isFinite(maxTokens)) body.max_tokens = maxTokens;
    if (stream) body.stream_options = { include_usage: true };

    const node = addMessage("assistant", "");
    node.dataset.state = "streaming";
    node.setAttribute("aria-busy", "true");
    $("chat-stats").textContent = "";
    controller = new AbortController();
    setBusy(true);
    const started = performance.now();
    let first = null, text = "", usage = null, finish = null;
    try {
      const response = await api("/v1/chat/completions", { json: body, signal: controller.signal });
      if (stream) {
        for await (const event of sseEvents(response)) {
          if (event.error) throw new ApiError(event.error.message || "The stream failed.", 0);
          if (event.usage) usage = event.usage;
          const choice = event.choices && event.choices[0];
          if (!choice) continue;
          const piece = choice.delta && choice.delta.content;
          if (piece) {
            if (first === null) first = performance.now();
            text += piece;
            setText(node, text);
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      } else {
        const data = await response.json();
        first = null;
        text = data.choices[0].message.content || "";
        usage = data.usage;
        finish = data.choices[0].finish_reason;
        setText(node, text);
      }
      turns.push({ role: "assistant", content: text });
      node.dataset.state = "done";
      $("chat-stats").textContent = chatStats(usage, started, first, performance.now(), finish);
    } catch (err) {
      if (err.name === "AbortError") {
        if (node.isConnected) turns.push({ role: "assistant", content: text });  // (not after Clear)
        node.dataset.state = "stopped";
        node.append(el("span", { class: "note", textContent: "(stopped)" }));
        $("chat-stats").textContent = `Stopped after ${seconds(performance.now() - started)}.`;
      } else {
        node.dataset.state = "error";
        if (!text) {  // nothing came back: give the message back to edit and resend
          turns.pop();
          node.remove();
          userNode.remove();
          input.value = prompt;
        } else {
          turns.push({ role: "assistant", content: text });
        }
        fail("chat-error", err);
      }
    } finally {
      node.removeAttribute("aria-busy");
      controller = null;
      setBusy(false);
    }
  }

  $("chat-send-form").addEventListener("submit", (event) => { event.preventDefault(); sendChat(); });
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendChat();
    }
  });
  $("chat-stop").addEventListener("click", () => { if (controller) controller.abort(); });
  $("chat-clear").addEventListener("click", () => {
    if (controller) controller.abort();
    turns.length = 0;
    $("chat-log").replaceChildren();
    $("chat-stats").textContent = "";
    show("chat-error", "");
  });

  // ---- embeddings ----------------------------------------------------------------------------
  function cosine(a, b) {
    let dot = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    return dot / (Math.sqrt(na * nb) || 1);
  }
  function heatColor(value) {  // white at 0, blue towards 1, orange towards -1
    const strength = Math.min(1, Math.abs(value));
    return `hsl(${value < 0 ? 25 : 215} 85% ${Math.round(97 - 52 * strength)}%)`;
  }
  function renderHeatMap(texts, vectors) {
    const head = el("tr", {}, el("td"));
    texts.forEach((text, j) => head.append(el("th", { scope: "col", textContent: String(j + 1), title: text })));
    const rows = vectors.map((a, i) => {
      const row = el("tr", {}, el("th", { scope: "row", textContent: String(i + 1), title: texts[i] }));
      for (let j = 0; j < vectors.length; j++) {
        const value = cosine(a, vectors[j]);
        const cell = el("td", { class: "num", textContent: value.toFixed(2), title: `${i + 1} and ${j + 1}: ${value.toFixed(4)}` });
        cell.style.backgroundColor = heatColor(value);  // CSSOM, allowed by the CSP (no inline style attribute)
        if (Math.abs(value) > 0.7) cell.style.color = "#fff";
        row.append(cell);
      }
      return row;
    });
    const table = el("table", { class: "heat", id: "embed-grid" },
      el("caption", { textContent: "Cosine similarity" }), el("thead", {}, head), el("tbody", {}, ...rows));
    const legend = el("ol", { class: "texts" }, ...texts.map((text) => el("li", { textContent: text })));
    $("embed-result").replaceChildren(el("div", { class: "scroll" }, table), legend);
  }
  $("embed-form").addEventListener("submit", (event) => {
    event.preventDefault();
    running($("embed-run"), "embed-error", async () => {
      const model = modelOf("embed-model", "produce embeddings");
      const texts = $("embed-input").value.split("\n").map((t) => t.trim()).filter(Boolean);
      if (!texts.length) throw new ApiError("Type at least one text.", 0);
      const started = performance.now();
      const data = await (await api("/v1/embeddings", { json: { model, input: texts } })).json();
      const vectors = data.data.slice().sort((a, b) => a.index - b.index).map((d) => d.embedding);
      renderHeatMap(texts, vectors);
      $("embed-stats").textContent = `${vectors.length} vectors of ${vectors[0].length} dimensions · ` +
        `${data.usage ? data.usage.prompt_tokens + " tokens · " : ""}${seconds(performance.now() - started)}`;
    });
  });

  // ---- transcription -------------------------------------------------------------------------
  const clock = (s) => `${Math.floor(s / 60)}:${(s % 60).toFixed(2).padStart(5, "0")}`;
  let previewUrl = null;
  function preview(blob) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    const audio = $("audio-preview");
    audio.src = previewUrl;
    audio.hidden = false;
  }
  async function transcribe(blob, filename) {
    const form = new FormData();
    form.append("file", blob, filename);
    form.append("model", modelOf("audio-model", "transcribe audio"));
    form.append("response_format", "verbose_json");
    const language = $("audio-language").value.trim();
    if (language) form.append("language", language);
    $("audio-text").textContent = "";
    $("audio-stats").textContent = "Transcribing…";
    $("audio-segments").hidden = true;
    const started = performance.now();
    let data;
    try {
      data = await (await api("/v1/audio/transcriptions", { body: form })).json();
    } finally {
      $("audio-stats").textContent = "";
    }
    $("audio-text").textContent = (data.text || "").trim();
    const rows = (data.segments || []).map((s) => el("tr", {}, el("td", { class: "num", textContent: clock(s.start) }),
      el("td", { class: "num", textContent: clock(s.end) }), el("td", { textContent: s.text.trim() })));
    $("audio-segments").tBodies[0].replaceChildren(...rows);
    $("audio-segments").hidden = !rows.length;
    $("audio-stats").textContent = (data.duration ? `${data.duration.toFixed(1)} s of audio` : "") +
      (data.language ? ` · ${data.language}` : "") + ` · transcribed in ${seconds(performance.now() - started)}`;
  }
  $("audio-form").addEventListener("submit", (event) => {
    event.preventDefault();
    running($("audio-run"), "audio-error", async () => {
      const file = $("audio-file").files[0];
      if (!file) throw new ApiError("Choose an audio file first, or record one.", 0);
      preview(file);
      await transcribe(file, file.name);
    });
  });

  // A recording (WebM or Ogg, whatever this browser records) is decoded here and sent as a
  // 16 kHz mono WAV, which every server-side decoder reads.
  async function toWav(blob) {
    const context = new AudioContext();
    let decoded;
    try { decoded = await context.decodeAudioData(await blob.arrayBuffer()); } finally { context.close(); }
    const rate = 16000;
    const offline = new OfflineAudioContext(1, Math.max(1, Math.ceil(decoded.duration * rate)), rate);
    const source = offline.createBufferSource();
    source.buffer = decoded;
    source.connect(offline.destination);
    source.start();
    const pcm = (await offline.startRendering()).getChannelData(0);
    const view = new DataView(new ArrayBuffer(44 + pcm.length * 2));
    const ascii = (at, text) => { for (let i = 0; i < text.length; i++) view.setUint8(at + i, text.charCodeAt(i)); };
    ascii(0, "RIFF"); view.setUint32(4, 36 + pcm.length * 2, true); ascii(8, "WAVE"); ascii(12, "fmt ");
    view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true);
    view.setUint16(34, 16, true); ascii(36, "data"); view.setUint32(40, pcm.length * 2, true);
    for (let i = 0; i < pcm.length; i++) {
      const s = Math.max(-1, Math.min(1, pcm[i]));
      view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return new Blob([view], { type: "audio/wav" });
  }
  let recorder = null;
  $("audio-record").addEventListener("click", async () => {
    const button = $("audio-record");
    if (recorder) { recorder.stop(); return; }
    show("audio-error", "");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      show("audio-error", "The microphone is not available: " + err.message);
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
    recorder.addEventListener("stop", () => {
      stream.getTracks().forEach((track) => track.stop());
      recorder = null;
      button.textContent = "Record";
      button.setAttribute("aria-pressed", "false");
      running($("audio-run"), "audio-error", async () => {
        const wav = await toWav(new Blob(chunks, { type: chunks.length ? chunks[0].type : "audio/webm" }));
        preview(wav);
        await transcribe(wav, "recording.wav");
      });
    });
    recorder.start();
    button.textContent = "Stop recording";
    button.setAttribute("aria-pressed", "true");
  });

  // ---- images --------------------------------------------------------------------------------
  $("image-form").addEventListener("submit", (event) => {
    event.preventDefault();
    running($("image-run"), "image-error", async () => {
      const model = modelOf("image-model", "generate images");
      const prompt = $("image-prompt").value.trim();
      const step = parseInt($("image-steps").value, 10);
      const body = { model, prompt, size: $("image-size").value, n: 1, response_format: "b64_json" };
      if (Number.isFinite(step)) body.step = step;
      const started = performance.now();
      $("image-stats").textContent = "Generating…";
      try {
        const data = await (await api("/v1/images/generations", { json: body })).json();
        const image = el("img", { src: "data:image/png;base64," + data.data[0].b64_json, alt: prompt });
        $("image-result").replaceChildren(image);
        $("image-stats").textContent = `${body.size} in ${seconds(performance.now() - started)}`;
      } catch (err) {
        $("image-stats").textContent = "";
        throw err;
      }
    });
  });

  // ---- the API key and start-up --------------------------------------------------------------
  const keyInput = $("api-key");
  keyInput.value = apiKey;
  function useKey(key) {
    apiKey = key;
    try { if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE); } catch (_) { /* */ }
    gallery = null;
    loadModels();
    if ($("tab-models").getAttribute("aria-selected") === "true") loadGallery(true);
  }
  $("key-form").addEventListener("submit", (event) => { event.preventDefault(); useKey(keyInput.value.trim()); });
  $("key-forget").addEventListener("click", () => { keyInput.value = ""; useKey(""); });
  $("gallery-filter").addEventListener("input", filterGallery);
  for (const form of document.forms) form.addEventListener("submit", (event) => event.preventDefault());

  selectTab(tabFromHash() || $("tab-chat"), false);
  loadModels();
})();
