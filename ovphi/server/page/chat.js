// ovphi's chat page: pictures and questions to /v1/chat/completions, the answer streamed in as Markdown.
// The model's text is untrusted: it is rendered by marked, then sanitised by DOMPurify, never run.
"use strict";

const $ = (id) => document.getElementById(id);
const chat = { messages: [], pending: [] }; // messages: {role, text, images: [data URL], ...answer fields}
let apiKey = sessionStorage.getItem("ovphi-key");
let modelId = null;
let running = null; // the AbortController of the answer being streamed

// --- the conversation survives a reload: one IndexedDB record (pictures are too large for localStorage)
function database() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open("ovphi-chat", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("chat");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function loadConversation() {
  const db = await database();
  return new Promise((resolve) => {
    const request = db.transaction("chat").objectStore("chat").get("messages");
    request.onsuccess = () => resolve(request.result || []);
    request.onerror = () => resolve([]);
  });
}

async function saveConversation() {
  const db = await database();
  return new Promise((resolve) => {
    const transaction = db.transaction("chat", "readwrite");
    transaction.objectStore("chat").put(chat.messages, "messages");
    transaction.oncomplete = transaction.onerror = () => resolve();
  });
}

// --- the API, with the key asked for once per tab when the server wants one
function askForKey(reason) {
  const dialog = $("key-dialog");
  $("key-reason").textContent = reason;
  $("key-input").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      apiKey = $("key-input").value.trim();
      sessionStorage.setItem("ovphi-key", apiKey);
      resolve();
    }, { once: true });
  });
}

async function api(path, options = {}) {
  const headers = { ...options.headers, ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    await askForKey(apiKey ? "The server refused that key. Enter the right one." : "This server needs an API key.");
    return api(path, options);
  }
  return response;
}

async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (data) yield { event, data };
    }
  }
}

// --- what is shown
function statsLine(answer) {
  const parts = [];
  const t = answer.timings, usage = answer.usage;
  if (t && t.ttft_ms != null) parts.push(`TTFT ${(t.ttft_ms / 1000).toFixed(2)} s`);
  if (t && t.tpot_ms) parts.push(`${(1000 / t.tpot_ms).toFixed(1)} tokens/s`);
  if (usage) {
    const details = usage.prompt_tokens_details;  // absent where the engine does not say what it cached
    parts.push(`${usage.prompt_tokens} prompt tokens` + (details ? `, ${details.cached_tokens} cached` : ""),
               `${usage.completion_tokens} answer tokens`);
  }
  if (answer.stopped) parts.push("stopped");
  return parts.join(" · ");
}

function statusLine(answer) {
  if (!answer.status) return "";
  const elapsed = (Date.now() - answer.statusSince) / 1000;
  const eta = answer.status.eta_s != null ? ` of about ${Math.max(1, Math.round(answer.status.eta_s))} s` : "";
  return `${answer.status.message}: ${elapsed.toFixed(0)} s${eta}`;
}

function messageItem(message, index) {
  const item = document.createElement("li");
  item.className = `message ${message.role}`;
  const who = document.createElement("span");
  who.className = "visually-hidden";
  who.textContent = message.role === "user" ? "You:" : "ovphi:";
  item.append(who);
  (message.images || []).forEach((url, number) => {
    const image = document.createElement("img");
    image.src = url;
    image.alt = `picture ${number + 1} of message ${index + 1}`;
    image.className = "thumbnail";
    item.append(image);
  });
  const body = document.createElement("div");
  body.className = "body";
  if (message.role === "user") body.textContent = message.text;
  else body.innerHTML = DOMPurify.sanitize(marked.parse(message.text || ""));
  item.append(body);
  if (message.role === "assistant") {
    const status = document.createElement("p");
    status.className = "status";
    status.textContent = statusLine(message);
    const stats = document.createElement("p");
    stats.className = "stats";
    stats.textContent = statsLine(message);
    item.append(status, stats);
    if (message.error) {
      const error = document.createElement("p");
      error.className = "error";
      error.setAttribute("role", "alert");
      error.textContent = message.error;
      item.append(error);
    }
  }
  return item;
}

function render() {
  $("messages").replaceChildren(...chat.messages.map(messageItem));
  $("empty").hidden = chat.messages.length > 0;
  $("messages").lastElementChild?.scrollIntoView({ block: "end" });
}

// the answer being streamed, redrawn alone: the earlier messages and their pictures stay as they are
function renderAnswer(answer) {
  if (chat.messages[chat.messages.length - 1] !== answer) return; // New chat cleared it meanwhile
  const item = messageItem(answer, chat.messages.length - 1);
  $("messages").lastElementChild.replaceWith(item);
  item.scrollIntoView({ block: "end" });
}

function renderAttachments() {
  $("attachments").replaceChildren(...chat.pending.map((url, number) => {
    const item = document.createElement("li");
    const image = document.createElement("img");
    image.src = url;
    image.alt = `picture ${number + 1} to send`;
    image.className = "thumbnail";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove picture ${number + 1}`);
    remove.onclick = () => { chat.pending.splice(number, 1); renderAttachments(); };
    item.append(image, remove);
    return item;
  }));
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

// --- pictures in: the file picker, drag and drop, paste
function attach(files) {
  for (const file of files) {
    if (!file.type.startsWith("image/")) continue;
    const reader = new FileReader();
    reader.onload = () => { chat.pending.push(reader.result); renderAttachments(); };
    reader.readAsDataURL(file);
  }
}

// --- a turn
function requestMessages() {
  const messages = [];
  const system = $("system-prompt").value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const message of chat.messages.slice(0, -1)) {
    if (message.role === "assistant") {
      messages.push({ role: "assistant", content: message.text });
    } else {
      const images = (message.images || []).map((url) => ({ type: "image_url", image_url: { url } }));
      messages.push({ role: "user", content: [...images, { type: "text", text: message.text }] });
    }
  }
  return messages;
}

function readSettings() {
  const maxTokens = parseInt($("max-tokens").value, 10);
  const temperature = parseFloat($("temperature").value);
  return { max_tokens: maxTokens > 0 ? maxTokens : 256, temperature: temperature >= 0 ? temperature : 0 };
}

function applyChunk(answer, payload) {
  if (payload.usage) answer.usage = payload.usage;
  if (payload.timings) answer.timings = payload.timings;
  for (const choice of payload.choices || []) {
    if (choice.delta && choice.delta.content) {
      answer.text += choice.delta.content;
      answer.status = null;
    }
    if (choice.finish_reason) answer.finishReason = choice.finish_reason;
  }
}

async function send() {
  const text = $("prompt").value.trim();
  if (running || (!text && chat.pending.length === 0)) return;
  chat.messages.push({ role: "user", text, images: chat.pending });
  chat.pending = [];
  $("prompt").value = "";
  renderAttachments();
  const answer = { role: "assistant", text: "" };
  chat.messages.push(answer);
  render();
  running = new AbortController();
  setBusy(true);
  const ticker = setInterval(() => { if (answer.status) renderAnswer(answer); }, 1000);
  try {
    const body = { model: modelId, messages: requestMessages(), stream: true, ovphi_status: true,
                   stream_options: { include_usage: true }, ...readSettings() };
    const response = await api("/v1/chat/completions", { method: "POST", signal: running.signal,
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      answer.error = (problem.error && problem.error.message) || `the server answered ${response.status}`;
    } else {
      for await (const { event, data } of serverEvents(response)) {
        if (data === "[DONE]") break;
        const payload = JSON.parse(data);
        if (event === "status") {
          answer.status = payload;
          answer.statusSince = Date.now();
        } else {
          applyChunk(answer, payload);
        }
        renderAnswer(answer);
      }
    }
  } catch (error) {
    if (error.name === "AbortError") answer.stopped = true;
    else answer.error = `the request failed: ${error.message}`;
  } finally {
    clearInterval(ticker);
    running = null;
    answer.status = null;
    await saveConversation(); // before the page shows the answer done: a reload straight after finds it
    setBusy(false);
    renderAnswer(answer);
    $("prompt").focus();
  }
}

function stop() {
  if (running) running.abort();
}

async function newChat() {
  stop();
  chat.messages = [];
  chat.pending = [];
  await saveConversation(); // before the page shows it empty: a reload straight after finds it empty too
  renderAttachments();
  render();
  $("prompt").focus();
}

async function start() {
  $("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("prompt").addEventListener("paste", (event) => {
    const files = [...event.clipboardData.files].filter((file) => file.type.startsWith("image/"));
    if (files.length) {
      event.preventDefault();
      attach(files);
    }
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => { event.preventDefault(); attach(event.dataTransfer.files); });
  $("attach").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", () => { attach($("file").files); $("file").value = ""; });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", newChat);

  chat.messages = await loadConversation();
  render();
  const models = await (await api("/v1/models")).json();
  modelId = models.data[0].id;
  $("model-name").textContent = modelId;
  document.body.dataset.ready = "true";
}

start();
