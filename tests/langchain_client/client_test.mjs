// LangChain's ChatOpenAI (`@langchain/openai`) against a running `swarm serve`
// or gateway:
//   node client_test.mjs BASE_URL MODEL
// invoke and stream (the streamed greedy text must equal the invoked one), a
// stream aborted with an AbortController (the server must count it cancelled
// and go on serving), withStructuredOutput with method jsonSchema and a zod
// schema (constrained sampling: the object must validate), logprobs in
// response_metadata, usage_metadata, and a tool-calling round trip.
import assert from "node:assert/strict";
import { metrics, waitFor } from "./js_client_common.mjs";
import { HumanMessage, SystemMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { ChatOpenAI } from "@langchain/openai";
import { z } from "zod";

const [baseURL, model] = process.argv.slice(2);
const origin = new URL(baseURL).origin;

function chat(fields = {}) {
  return new ChatOpenAI({
    model,
    apiKey: "sk-not-needed",
    configuration: { baseURL },
    temperature: 0,
    maxTokens: 16,
    maxRetries: 0,
    streamUsage: true, // stream_options.include_usage, so streams report usage too
    ...fields,
  });
}
const llm = chat();
const messages = [new SystemMessage("You are terse."), new HumanMessage("Say something about swarms.")];
const seeded = { seed: 7 };


function checkUsage(usage, what) {
  assert.ok(usage?.input_tokens > 0 && usage.output_tokens > 0, `${what} usage: ${JSON.stringify(usage)}`);
  assert.equal(usage.total_tokens, usage.input_tokens + usage.output_tokens, `${what} usage: ${JSON.stringify(usage)}`);
}

async function main() {
  // invoke.
  const msg = await llm.invoke(messages, seeded);
  assert.equal(typeof msg.content, "string");
  assert.ok(msg.content.length > 0, "empty content");
  assert.ok(["stop", "length"].includes(msg.response_metadata.finish_reason), JSON.stringify(msg.response_metadata));
  assert.equal(msg.response_metadata.model_name, model);
  assert.match(msg.id, /^chatcmpl-/);
  checkUsage(msg.usage_metadata, "invoke");
  console.log("invoke: ok");

  // stream: the chunks add up (concat) to the same greedy text and usage.
  let merged = null, chunks = 0;
  for await (const chunk of await llm.stream(messages, seeded)) {
    merged = merged ? merged.concat(chunk) : chunk;
    chunks++;
  }
  assert.ok(chunks > 3, `only ${chunks} chunks`);
  assert.equal(merged.content, msg.content);
  assert.equal(merged.response_metadata.finish_reason, msg.response_metadata.finish_reason);
  checkUsage(merged.usage_metadata, "stream");
  assert.equal(merged.usage_metadata.input_tokens, msg.usage_metadata.input_tokens);
  assert.equal(merged.usage_metadata.output_tokens, msg.usage_metadata.output_tokens);
  console.log("stream: ok");

  // A long stream (this prompt runs to max_tokens, seconds of work) aborted
  // after its first chunk: the client ends it, the server sees the connection
  // go, cancels the completion (it does not run to max_tokens) and serves the
  // next request as before.
  const before = await metrics(origin);
  const controller = new AbortController();
  let received = "", abortError = null;
  const long = [new SystemMessage("You are terse."), new HumanMessage("Write a long story about swarms.")];
  try {
    for await (const chunk of await chat({ maxTokens: 1500 }).stream(long, { ...seeded, signal: controller.signal })) {
      received += chunk.content;
      if (received.length > 0) controller.abort();
    }
  } catch (e) {
    abortError = e;
  }
  assert.ok(abortError, "the aborted stream ended without an error");
  assert.ok(/abort/i.test(`${abortError.name} ${abortError.message}`), `not an abort: ${abortError}`);
  assert.ok(received.length > 0, "nothing arrived before the abort");
  await waitFor("cancelled completions, requests in flight", async () => {
    const m = await metrics(origin);
    return (m.cancelled === before.cancelled + 1 && m.inFlight === 0) || m;
  });
  const after = await llm.invoke(messages, seeded);
  assert.equal(after.content, msg.content);
  console.log("abort: ok (the server cancelled the completion and answers as before)");

  // withStructuredOutput, method jsonSchema: response_format json_schema,
  // sampled under the schema's grammar, so the object validates. (z.number().int() comes
  // with `minimum`/`maximum` of the safe integers: the grammar keeps to 15 digits.)
  const Swarm = z.object({
    name: z.string().max(12),
    size: z.number(),
    count: z.number().int(),
    flying: z.boolean(),
    kind: z.enum(["bees", "birds", "nodes"]),
    tags: z.array(z.string().max(8)).max(3),
    leader: z.union([z.string().max(8), z.null()]),
  });
  const structured = chat({ maxTokens: 200 }).withStructuredOutput(Swarm, { method: "jsonSchema", name: "swarm", includeRaw: true });
  const out = await structured.invoke([new HumanMessage("Describe a swarm as JSON.")], seeded);
  assert.ok(Swarm.safeParse(out.parsed).success, `parsed: ${JSON.stringify(out.parsed)}; raw: ${out.raw.content}`);
  assert.equal(out.raw.response_metadata.finish_reason, "stop");
  checkUsage(out.raw.usage_metadata, "withStructuredOutput");
  console.log(`withStructuredOutput: ok ${JSON.stringify(out.parsed)}`);

  // logprobs: true -> response_metadata.logprobs, OpenAI's shape.
  const withLogprobs = chat({ maxTokens: 4, logprobs: true, topLogprobs: 2 });
  const lp = await withLogprobs.invoke(messages, seeded);
  const content = lp.response_metadata.logprobs?.content;
  assert.ok(Array.isArray(content) && content.length >= 1, `logprobs: ${JSON.stringify(lp.response_metadata)}`);
  for (const t of content) {
    assert.equal(typeof t.token, "string");
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 2);
  }
  assert.equal(content.map((t) => t.token).join(""), lp.content);
  let lpMerged = null;
  for await (const chunk of await withLogprobs.stream(messages, seeded)) lpMerged = lpMerged ? lpMerged.concat(chunk) : chunk;
  assert.deepEqual(lpMerged.response_metadata.logprobs?.content, content);
  console.log("logprobs: ok");

  // Tool calling, a round trip: bindTools with a zod-typed tool and
  // tool_choice required (the server constrains sampling to a call), the
  // AIMessage's tool_calls, the same call streamed (deltas merged), then a
  // ToolMessage with the tool's result sent back and an answer.
  const weather = tool(async ({ city }) => JSON.stringify({ city, celsius: city === "Paris" ? 21 : 9 }), {
    name: "weather",
    description: "Today's weather in a city",
    schema: z.object({ city: z.enum(["Paris", "Oslo"]) }),
  });
  const ask = [new HumanMessage("What is the weather in Paris?")];
  const forced = chat({ maxTokens: 128 }).bindTools([weather], { tool_choice: "required" });
  const called = await forced.invoke(ask, seeded);
  assert.equal(called.tool_calls?.length, 1, JSON.stringify(called.tool_calls));
  const [call] = called.tool_calls;
  assert.equal(call.name, "weather");
  assert.ok(["Paris", "Oslo"].includes(call.args.city), JSON.stringify(call.args));
  assert.equal(called.response_metadata.finish_reason, "tool_calls");
  let callStreamed = null;
  for await (const chunk of await forced.stream(ask, seeded))
    callStreamed = callStreamed ? callStreamed.concat(chunk) : chunk;
  assert.deepEqual(callStreamed.tool_calls.map((c) => [c.name, c.args]), [[call.name, call.args]]);
  const result = await weather.invoke(call);  // a ToolMessage answering the call's id
  assert.equal(result.tool_call_id, call.id);
  const answer = await chat({ maxTokens: 16 }).bindTools([weather], { tool_choice: "none" })
    .invoke([...ask, called, result], seeded);
  assert.equal(answer.tool_calls?.length ?? 0, 0);
  assert.equal(typeof answer.content, "string");
  console.log(`tools: ok (called weather(${call.args.city}), streamed the same call, answered after the result)`);

  console.log("langchain client: all checks passed");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
