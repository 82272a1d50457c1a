// The gateway's swarm page in a real browser (Debian's chromium driven by
// playwright-core):
//   node page_test.mjs URL NODES [SCREENSHOT_DIR]
// NODES: "ADDRESS=PID=A:B,..." for each node the gateway routes through.
// The page must show every node reachable on its layers with no gap, stream a
// chat answer into the page, show its request live on its chain, and, once the
// second node is killed, show it unreachable and its layers as a gap. Every
// step waits on a condition in the page, never a fixed time.
import assert from "node:assert/strict";
import path from "node:path";
import { chromium } from "playwright-core";

const [url, nodesArg, shots] = process.argv.slice(2);
const nodes = nodesArg.split(",").map((s) => {
  const [address, pid, layers] = s.split("=");
  const [first, last] = layers.split(":").map(Number);
  return { address, pid: Number(pid), first, last };
});
assert.ok(nodes.length >= 2, `nodes: ${nodesArg}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // As root (CI, containers) chromium runs only without its sandbox.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.setDefaultTimeout(60_000);
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
  await page.goto(url);

  // Every node, reachable, on its own layers; every layer covered.
  const row = (n) => page.locator(`tr.node[data-address="${n.address}"]`);
  for (const n of nodes) {
    await page.locator(`tr.node[data-address="${n.address}"][data-reachable="true"]`).waitFor();
    const on = await row(n).locator("td.cell.on").count();
    assert.equal(on, n.last - n.first, `${n.address} should light ${n.last - n.first} layer cells`);
  }
  await page.locator(`[data-gaps=""]`).waitFor();
  assert.equal(await page.locator("td.cell.gap").count(), 0);
  assert.match(await page.locator("#status").textContent(), new RegExp(`${nodes.length} of ${nodes.length} nodes reachable`));

  // A chat message: the answer streams in, in more than one piece.
  await page.locator("details summary").click();
  await page.locator("#chat-temperature").fill("0");
  await page.locator("#chat-max-tokens").fill("96");
  await page.evaluate(() => {
    window.answerLengths = [];
    new MutationObserver(() => {
      const a = document.querySelector(".msg.assistant");
      if (a) window.answerLengths.push(a.textContent.length);
    }).observe(document.getElementById("chat-log"), { childList: true, subtree: true, characterData: true });
  });
  await page.locator("#chat-input").fill("Tell me about the swarm.");
  await page.locator("#chat-input").press("Enter");
  await page.locator(`.msg.user`).filter({ hasText: "Tell me about the swarm." }).waitFor();
  const answer = page.locator(".msg.assistant").first();
  // While it streams (the gateway delays each step), the request shows live on its chain.
  await page.waitForFunction((n) => document.querySelectorAll(`li.request[data-live="true"] .stage`).length === n,
                             nodes.length);
  await page.locator(`.msg.assistant[data-done="true"]`).waitFor();
  const text = await answer.textContent();
  assert.ok(text.trim().length > 0, "the answer is empty");
  assert.ok(!(await answer.evaluate((e) => e.classList.contains("error"))), `the answer failed: ${text}`);
  const lengths = [...new Set(await page.evaluate(() => window.answerLengths))].filter((n) => n > 0);
  assert.ok(lengths.length >= 2, `the answer arrived in ${lengths.length} piece(s), not streamed: ${lengths}`);

  // The request, ended, on the chain through every node; the chart has counted its tokens.
  const request = page.locator(`li.request[data-live="false"]`).first();
  await request.waitFor();
  await page.waitForFunction((n) => document.querySelectorAll(`li.request[data-live="false"] .stage`).length === n, nodes.length);
  await page.waitForFunction(() => window.swarmState && window.swarmState.tokens_per_second.samples.some((v) => v > 0));
  if (shots) await page.screenshot({ path: path.join(shots, "swarm-page.png"), fullPage: true });

  // Kill the second node: it turns unreachable and its layers become a gap.
  const victim = nodes[1];
  process.kill(victim.pid, "SIGKILL");
  await page.locator(`tr.node[data-address="${victim.address}"][data-reachable="false"]`).waitFor();
  const gap = `${victim.first}:${victim.last}`;
  await page.locator(`[data-gaps="${gap}"]`).waitFor();
  const gapCells = await page.locator("td.cell.gap").evaluateAll((cells) => cells.map((c) => c.dataset.layer));
  const expected = [];
  for (let l = victim.first; l < victim.last; l++) expected.push(`${l}:${l + 1}`);
  assert.deepEqual(gapCells, expected);
  for (const n of nodes.filter((n) => n !== victim))
    assert.equal(await row(n).getAttribute("data-reachable"), "true", `${n.address} should still be reachable`);
  if (shots) await page.screenshot({ path: path.join(shots, "swarm-page-gap.png"), fullPage: true });

  assert.deepEqual(problems, []);
  console.log(`swarm page: ${nodes.length} nodes shown, answer streamed in ${lengths.length} pieces ` +
              `(${JSON.stringify(text.slice(0, 60))}...), gap ${gap} shown after killing ${victim.address}`);
} finally {
  await browser.close();
}
