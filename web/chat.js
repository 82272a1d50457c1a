// The swarm page's chat box: streams an answer from the gateway's own
// POST /v1/chat/completions (server-sent events, read with fetch and a
// ReadableStream), keeping the conversation so far.
"use strict";

(() => {
  const log = document.getElementById("chat-log");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const send = document.getElementById("chat-send");
  const messages = [];
  let busy = false;  // one question at a time

  function bubble(role, text) {
    const b = document.createElement("div");
    b.className = `msg ${role}`;
    b.dataset.role = role;
    b.textContent = text;
    log.append(b);
    log.scrollTop = log.scrollHeight;
    return b;
  }

  // Calls onEvent with each JSON event of an SSE body until [DONE].
  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") return;
          onEvent(JSON.parse(data));
        }
      }
    }
  }

  async function ask(text) {
    messages.push({ role: "user", content: text });
    bubble("user", text);
    const answer = bubble("assistant", "");
    answer.classList.add("streaming");
    const state = window.swarmState;
    const body = { messages, stream: true, max_tokens: Number(document.getElementById("chat-max-tokens").value) || 128 };
    if (state && state.models.length) body.model = state.models[0].names[0];
    const temperature = document.getElementById("chat-temperature").value;
    if (temperature !== "") body.temperature = Number(temperature);
    const headers = { "Content-Type": "application/json" };
    const key = document.getElementById("chat-key").value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    let reply = "";
    try {
      const res = await fetch("v1/chat/completions", { method: "POST", headers, body: JSON.stringify(body) });
      if (!res.ok) {
        const err = await res.json().catch(() => null);
        throw new Error(err?.error?.message || `HTTP ${res.status}`);
      }
      await readEvents(res.body, (event) => {
        if (event.error) throw new Error(event.error.message);
        for (const choice of event.choices || []) {
          reply += choice.delta?.content ?? "";
          if (choice.finish_reason) answer.dataset.finish = choice.finish_reason;
        }
        answer.textContent = reply;
        log.scrollTop = log.scrollHeight;
      });
      messages.push({ role: "assistant", content: reply });
      answer.dataset.done = "true";
    } catch (e) {
      messages.pop();  // the question that got no answer
      answer.classList.add("error");
      answer.textContent = reply + (reply ? "\n" : "") + `error: ${e.message}`;
    } finally {
      answer.classList.remove("streaming");
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || busy) return;
    input.value = "";
    busy = send.disabled = true;
    try { await ask(text); } finally { busy = send.disabled = false; input.focus(); }
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  document.getElementById("chat-reset").addEventListener("click", () => {
    messages.length = 0;
    log.replaceChildren();
  });
})();
