// The Vercel AI SDK (`ai` with `@ai-sdk/openai-compatible`) against a running
// `swarm serve` or gateway:
//   node client_test.mjs BASE_URL MODEL
// generateText and streamText (the streamed greedy text must equal the
// generated one), a stream aborted with an AbortController (the server must
// count it cancelled and go on serving), generateObject with a zod schema
// (constrained sampling: the object must validate), logprobs through the
// provider's pass-through options, token usage, and a tool-calling round trip.
import assert from "node:assert/strict";
import { metrics, waitFor } from "./js_client_common.mjs";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, model] = process.argv.slice(2);
const origin = new URL(baseURL).origin;

// The provider hands back only the fields it knows; a metadata extractor is
// its documented way to read others, here each choice's `logprobs`.
const logprobsExtractor = {
  extractMetadata: async ({ parsedBody }) => ({ swarm: { logprobs: parsedBody?.choices?.[0]?.logprobs ?? null } }),
  createStreamExtractor: () => {
    const content = [];
    return {
      processChunk(chunk) {
        content.push(...(chunk?.choices?.[0]?.logprobs?.content ?? []));
      },
      buildMetadata: () => ({ swarm: { logprobs: { content } } }),
    };
  },
};
const swarm = createOpenAICompatible({
  name: "swarm",
  baseURL,
  apiKey: "sk-not-needed",
  includeUsage: true, // stream_options.include_usage, so streams report usage too
  supportsStructuredOutputs: true, // response_format json_schema rather than json_object
  metadataExtractor: logprobsExtractor,
});
const llm = swarm.chatModel(model);

const system = "You are terse.";
const prompt = "Say something about swarms.";
const greedy = { temperature: 0, seed: 7, maxRetries: 0 };


function checkUsage(usage, what) {
  assert.ok(usage.inputTokens > 0 && usage.outputTokens > 0, `${what} usage: ${JSON.stringify(usage)}`);
  assert.equal(usage.totalTokens, usage.inputTokens + usage.outputTokens, `${what} usage: ${JSON.stringify(usage)}`);
}

async function main() {
  // generateText.
  const gen = await generateText({ model: llm, system, prompt, maxOutputTokens: 16, ...greedy });
  assert.equal(typeof gen.text, "string");
  assert.ok(gen.text.length > 0, "empty text");
  assert.ok(["stop", "length"].includes(gen.finishReason), `finishReason ${gen.finishReason}`);
  assert.equal(gen.response.modelId, model);
  checkUsage(gen.usage, "generateText");
  console.log("generateText: ok");

  // streamText: the deltas add up to the same greedy text, with the same usage.
  const errors = [];
  const stream = streamText({ model: llm, system, prompt, maxOutputTokens: 16, ...greedy, onError: ({ error }) => errors.push(error) });
  let text = "", deltas = 0;
  for await (const delta of stream.textStream) {
    text += delta;
    deltas++;
  }
  assert.deepEqual(errors, []);
  assert.equal(text, gen.text);
  assert.equal(await stream.text, gen.text);
  assert.equal(await stream.finishReason, gen.finishReason);
  assert.ok(deltas > 3, `only ${deltas} deltas`);
  const streamedUsage = await stream.usage;
  checkUsage(streamedUsage, "streamText");
  assert.equal(streamedUsage.inputTokens, gen.usage.inputTokens);
  assert.equal(streamedUsage.outputTokens, gen.usage.outputTokens);
  console.log("streamText: ok");

  // A long stream (this prompt runs to max_tokens, seconds of work) aborted
  // after its first delta: the client ends it, the server sees the connection go, cancels the completion (it does not run to
  // max_tokens) and serves the next request as before.
  const before = await metrics(origin);
  const controller = new AbortController();
  let aborted = false, received = "";
  const long = streamText({
    model: llm, system, prompt: "Write a long story about swarms.", maxOutputTokens: 1500, ...greedy,
    abortSignal: controller.signal,
    onAbort: () => { aborted = true; },
    onError: ({ error }) => errors.push(error),
  });
  try {
    for await (const part of long.fullStream) {
      if (part.type === "text-delta") {
        received += part.text;
        controller.abort();
      }
    }
  } catch (e) {
    // Some paths surface the abort as the signal's AbortError; that is an abort too.
    if (e?.name !== "AbortError") throw e;
    aborted = true;
  }
  assert.ok(aborted, "the stream did not report its abort");
  assert.ok(received.length > 0, "nothing arrived before the abort");
  await waitFor("cancelled completions, requests in flight", async () => {
    const m = await metrics(origin);
    return (m.cancelled === before.cancelled + 1 && m.inFlight === 0) || m;
  });
  const after = await generateText({ model: llm, system, prompt, maxOutputTokens: 16, ...greedy });
  assert.equal(after.text, gen.text);
  console.log("abort: ok (the server cancelled the completion and answers as before)");

  // generateObject with a zod schema: response_format json_schema, sampled
  // under the schema's grammar, so the object validates. (z.number().int() comes
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
  const obj = await generateObject({
    model: llm, schema: Swarm, schemaName: "swarm", system, prompt: "Describe a swarm as JSON.",
    maxOutputTokens: 200, ...greedy,
  });
  assert.ok(Swarm.safeParse(obj.object).success, `object: ${JSON.stringify(obj.object)}`);
  assert.equal(obj.finishReason, "stop");
  checkUsage(obj.usage, "generateObject");
  console.log(`generateObject: ok ${JSON.stringify(obj.object)}`);

  // Logprobs: the provider passes unknown provider options through to the
  // request body, and the extractor above reads them back.
  const lp = await generateText({
    model: llm, system, prompt, maxOutputTokens: 4, ...greedy,
    providerOptions: { swarm: { logprobs: true, top_logprobs: 2 } },
  });
  const content = lp.providerMetadata?.swarm?.logprobs?.content;
  assert.ok(Array.isArray(content) && content.length >= 1, `logprobs: ${JSON.stringify(lp.providerMetadata)}`);
  for (const t of content) {
    assert.equal(typeof t.token, "string");
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 2);
  }
  assert.equal(content.map((t) => t.token).join(""), lp.text);
  const lpStream = streamText({
    model: llm, system, prompt, maxOutputTokens: 4, ...greedy,
    providerOptions: { swarm: { logprobs: true, top_logprobs: 2 } },
  });
  await lpStream.consumeStream();
  const streamedContent = (await lpStream.providerMetadata)?.swarm?.logprobs?.content;
  assert.deepEqual(streamedContent, content);
  console.log("logprobs: ok");

  // Tool calling, a round trip: generateText with a zod-typed tool runs two
  // steps. The first must call it (toolChoice required: the server constrains
  // sampling to a call, so even this tiny model makes a valid one); the SDK
  // runs the tool and sends its result back with the call in the history; the
  // second step (toolChoice none) answers in text.
  const weather = tool({
    description: "Today's weather in a city",
    inputSchema: z.object({ city: z.enum(["Paris", "Oslo"]) }),
    execute: async ({ city }) => ({ city, celsius: city === "Paris" ? 21 : 9 }),
  });
  const trip = await generateText({
    model: llm, system, prompt: "What is the weather in Paris?", tools: { weather },
    stopWhen: stepCountIs(2), maxOutputTokens: 128, ...greedy,
    prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? "required" : "none" }),
  });
  assert.equal(trip.steps.length, 2, `steps: ${JSON.stringify(trip.steps.map((x) => x.finishReason))}`);
  const [call] = trip.steps[0].toolCalls;
  assert.equal(call?.toolName, "weather");
  assert.ok(["Paris", "Oslo"].includes(call.input.city), JSON.stringify(call.input));
  assert.equal(trip.steps[0].finishReason, "tool-calls");
  assert.equal(trip.steps[0].toolResults[0]?.output?.city, call.input.city);
  assert.equal(trip.steps[1].toolCalls.length, 0);
  assert.ok(["stop", "length"].includes(trip.steps[1].finishReason), trip.steps[1].finishReason);
  assert.equal(typeof trip.text, "string");
  console.log(`tools: ok (called weather(${call.input.city}), then answered in text)`);

  assert.deepEqual(errors, []);
  console.log("ai sdk client: all checks passed");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
