// Helpers the JavaScript client tests share (tests/js_client_test.sh copies
// this file beside each client_test.mjs).
import assert from "node:assert/strict";

// The server's Prometheus counters at `origin`, to see what it made of an
// aborted stream.
export async function metrics(origin) {
  const text = await (await fetch(`${origin}/metrics`)).text();
  const value = (name) => Number(text.match(new RegExp(`^${name} (\\S+)$`, "m"))?.[1] ?? 0);
  return {
    cancelled: value('swarm_completions_total\\{finish_reason="cancelled"\\}'),
    inFlight: value("swarm_requests_in_flight"),
  };
}

// Polls `condition` until it returns true; fails with what it last returned
// after `seconds`.
export async function waitFor(what, condition, seconds = 20) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const seen = await condition();
    if (seen === true) return;
    if (Date.now() > end) assert.fail(`${what}: still ${JSON.stringify(seen)} after ${seconds} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
