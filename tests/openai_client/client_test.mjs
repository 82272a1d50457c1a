// The official `openai` npm package against a running `swarm serve`:
//   node client_test.mjs BASE_URL MODEL
// Chat and completions, streamed and not; the streamed text must equal the
// non-streamed text, and errors must surface as the client's typed errors.
import assert from "node:assert/strict";
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-not-needed", maxRetries: 0, timeout: 60_000 });

async function main() {
  const models = await client.models.list();
  assert.ok(models.data.some((m) => m.id === model), `models: ${JSON.stringify(models.data)}`);

  // Chat, not streamed.
  const messages = [
    { role: "system", content: "You are terse." },
    { role: "user", content: "Say something about swarms." },
  ];
  const chat = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0, seed: 7 });
  assert.match(chat.id, /^chatcmpl-/);
  assert.equal(chat.object, "chat.completion");
  assert.equal(chat.model, model);
  assert.equal(chat.choices.length, 1);
  assert.equal(chat.choices[0].message.role, "assistant");
  assert.match(chat.system_fingerprint, /^fp_[0-9a-f]{16}$/);
  assert.equal(typeof chat.choices[0].message.content, "string");
  assert.ok(["stop", "length"].includes(chat.choices[0].finish_reason));
  const u = chat.usage;
  assert.ok(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.total_tokens === u.prompt_tokens + u.completion_tokens);

  // Chat, streamed with usage: the deltas add up to the same text.
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 16, temperature: 0, seed: 7, stream: true, stream_options: { include_usage: true },
  });
  let text = "", finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    assert.equal(chunk.object, "chat.completion.chunk");
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, chat.choices[0].message.content);
  assert.equal(finish, chat.choices[0].finish_reason);
  const final0 = await client.chat.completions.stream({ model, messages, max_tokens: 2 }).finalChatCompletion();
  assert.equal(final0.system_fingerprint, chat.system_fingerprint, "one fingerprint per server");
  // The same token counts streamed or not (a gateway's usage also reports
  // its speculation, whose timings differ from request to request).
  const counts = (u) => ({ prompt: u.prompt_tokens, completion: u.completion_tokens, total: u.total_tokens });
  assert.deepEqual(counts(usage), counts(chat.usage));
  assert.ok(chunks > 3, `only ${chunks} chunks`);

  // The helper that assembles a streamed message.
  const runner = client.chat.completions.stream({ model, messages, max_tokens: 16, temperature: 0 });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, chat.choices[0].message.content);

  // Completions, not streamed and streamed, with a stop string.
  const prompt = "The licensee may copy and distribute";
  const comp = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0 });
  assert.match(comp.id, /^cmpl-/);
  assert.equal(comp.object, "text_completion");
  const full = comp.choices[0].text;
  let streamed = "";
  for await (const chunk of await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0, stream: true })) {
    streamed += chunk.choices[0]?.text ?? "";
  }
  assert.equal(streamed, full);
  const m = full.slice(3).match(/[A-Za-z]{2}/);
  if (m) {
    const stopped = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0, stop: [m[0]] });
    assert.equal(stopped.choices[0].text, full.slice(0, full.indexOf(m[0])));
    assert.equal(stopped.choices[0].finish_reason, "stop");
  }

  // A model name the server does not serve (a client's default) is answered by
  // the model it serves, as llama-server does.
  const other = await client.chat.completions.create({ model: "gpt-4o-mini", messages, max_tokens: 2 });
  assert.equal(other.model, model);
  // Several choices with logprobs, in the shapes the client types.
  const two = await client.chat.completions.create({
    model, messages, max_tokens: 3, n: 2, seed: 3, logprobs: true, top_logprobs: 2,
  });
  assert.equal(two.choices.length, 2);
  assert.deepEqual(two.choices.map((c) => c.index), [0, 1]);
  for (const c of two.choices) {
    assert.ok(c.logprobs.content.length >= 1);
    assert.equal(c.logprobs.content[0].top_logprobs.length, 2);
    assert.ok(c.logprobs.content[0].logprob <= 0);
  }
  // Errors arrive as the client's typed errors.
  await assert.rejects(
    client.chat.completions.create({ model, messages, n: 9 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "n",
  );
  await assert.rejects(
    client.completions.create({ model, prompt: "x", max_tokens: 1 << 20 }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === "context_length_exceeded",
  );
  // Tools: a request offering a function and a history with a call and its result
  // round-trips; the answer is text or calls, in OpenAI's shapes either way.
  const tools = [{
    type: "function",
    function: {
      name: "get_weather", description: "The weather in a city now",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  }];
  const history = [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: null, tool_calls: [
      { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
    { role: "tool", tool_call_id: "call_1", content: "21 C, sunny" },
  ];
  const checkToolAnswer = (c) => {
    const msg = c.choices[0].message;
    if (msg.tool_calls?.length) {
      assert.equal(c.choices[0].finish_reason, "tool_calls");
      for (const call of msg.tool_calls) {
        assert.equal(call.type, "function");
        assert.equal(call.function.name, "get_weather");
        JSON.parse(call.function.arguments);
      }
    } else {
      assert.equal(typeof msg.content, "string");
      assert.ok(["stop", "length"].includes(c.choices[0].finish_reason));
    }
  };
  for (const msgs of [[history[0]], history]) {
    checkToolAnswer(await client.chat.completions.create({ model, messages: msgs, tools, max_tokens: 8, temperature: 0 }));
    const streamed = await client.chat.completions
      .stream({ model, messages: msgs, tools, max_tokens: 8, temperature: 0 })
      .finalChatCompletion();
    checkToolAnswer(streamed);
  }
  const withTools = await client.chat.completions.create({ model, messages: [history[0]], tools, max_tokens: 1 });
  const without = await client.chat.completions.create({ model, messages: [history[0]], max_tokens: 1 });
  assert.ok(withTools.usage.prompt_tokens > without.usage.prompt_tokens, "the tools are in the prompt");
  await assert.rejects(
    client.chat.completions.create({ model, messages, tools, tool_choice: { type: "function", function: { name: "nope" } } }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "tool_choice",
  );

  // A forced call is certain (sampling follows the call's grammar), streamed or not.
  const unitTool = [{
    type: "function",
    function: {
      name: "get_weather",
      parameters: { type: "object", properties: { unit: { enum: ["c", "f"] } }, required: ["unit"] },
    },
  }];
  for (const stream of [false, true]) {
    const req = {
      model, messages: [history[0]], tools: unitTool, parallel_tool_calls: false, temperature: 0,
      tool_choice: { type: "function", function: { name: "get_weather" } },
    };
    const c = stream
      ? await client.chat.completions.stream(req).finalChatCompletion()
      : await client.chat.completions.create(req);
    assert.equal(c.choices[0].finish_reason, "tool_calls");
    assert.equal(c.choices[0].message.tool_calls.length, 1);
    const call = c.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, "get_weather");
    assert.ok(["c", "f"].includes(JSON.parse(call.function.arguments).unit), call.function.arguments);
  }

  console.log("openai client: all checks passed");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
