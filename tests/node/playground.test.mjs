/*
 * The playground page (GET /) in a real browser: Debian's Chromium, headless, driven by
 * puppeteer-core as a user would use the page: type a prompt, press Generate, wait for
 * the streamed text, click a token, read the candidate panel. The text is checked against
 * `quill generate --no-echo` with the settings the page shows, and the panel's bars
 * against what a distribution is: after each stage, its probabilities add up to 1.
 * Screenshots go to build/ (build/playground.png, the one docs/images/playground.png is).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import puppeteer from "puppeteer-core";

import { ROOT, assertSameText, cliBytes, sharedFile, startServer } from "./quill.mjs";

const STORIES = sharedFile("models/stories260K.gguf");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PROMPT = "Lily and Ben went to the park";
const MAX_TOKENS = 24;
/* The page's default settings (playground.js's SETTINGS and DEFAULT_CHAIN, index.html's
 * seed), named as the command line's flags. */
const PAGE_DEFAULTS = { "seed": 42, "temperature": 0.8, "top-k": 40, "typical-p": 1, "top-p": 0.95,
                        "min-p": 0.05, "repeat-penalty": 1, "presence-penalty": 0, "frequency-penalty": 0,
                        "samplers": "penalties,dry,top-n-sigma,top-k,typical-p,top-p,min-p,xtc,temperature" };

/* `quill generate --no-echo` with the page's prompt, length and these settings. */
const cliText = (settings) => cliBytes(STORIES.path, [
  "--prompt", PROMPT, "--max-tokens", String(MAX_TOKENS),
  ...Object.entries(settings).flatMap(([flag, value]) => [`--${flag}`, String(value)])]);

/* Replaces what a field holds with text typed on the keyboard, as a user does. */
async function typeInto(page, selector, text) {
  await page.click(selector, { clickCount: 3 });
  await page.keyboard.press("Backspace");
  await page.keyboard.type(text);
}

/* Presses Generate and waits until the run is over (Generate is enabled again) and its
 * last token has come: the output's text, and the tokens' count. */
async function generate(page) {
  await page.click("#generate");
  await page.waitForSelector("#column-a .output .tok");
  await page.waitForFunction(() => !document.querySelector("#generate").disabled &&
                                    /finish: /.test(document.querySelector("#column-a .stats").textContent));
  assert.equal(await page.$eval("#error", (e) => e.hidden), true, await page.$eval("#error", (e) => e.textContent));
  return page.$eval("#column-a .output", (o) => ({ text: o.textContent, tokens: o.querySelectorAll(".tok").length }));
}

/* Clicks the i-th token and reads the panel: per stage (section.stage, data-stage) its
 * bars' probabilities (data-p on each .bar-row), which are the server's own, and the
 * probability of the "(N more)" bar when the stage kept more candidates than it lists. */
async function clickToken(page, i) {
  const tokens = await page.$$("#column-a .output .tok");
  await tokens[i].click();
  await page.waitForSelector("#panel:not([hidden]) section.stage");
  return page.$$eval("#panel-stages section.stage", (sections) => sections.map((s) => ({
    stage: s.dataset.stage,
    listed: [...s.querySelectorAll(".bar-row:not(.rest)")].map((r) => Number(r.dataset.p)),
    rest: [...s.querySelectorAll(".bar-row.rest")].map((r) => Number(r.dataset.p)),
    chosen: s.querySelectorAll(".bar-row.chosen").length,
  })));
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

describe("the playground in headless Chromium", { skip: STORIES.skip }, () => {
  let server, browser, page;
  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing (make deps installs Debian's chromium)`);
    server = await startServer(STORIES.path);
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      /* Chromium's sandbox refuses to start as root (a container's user) */
      args: process.getuid() === 0 ? ["--no-sandbox"] : [],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 1000 });
  });
  /* each test starts from the page as loaded, with the prompt and length typed in */
  beforeEach(async () => {
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => document.querySelector("#health").textContent === "server ready");
    await typeInto(page, "#prompt", PROMPT);
    await typeInto(page, "#max-tokens", String(MAX_TOKENS));
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test("the default settings: the streamed text is the command line's, and each stage's bars add up to 1", async () => {
    /* the system message belongs to chat mode: shown only while it is ticked */
    const systemShown = () => page.$eval("#system-row", (e) => getComputedStyle(e).display !== "none");
    assert.equal(await systemShown(), false);
    await page.click("#chat-mode");
    assert.equal(await systemShown(), true);
    await page.click("#chat-mode");
    assert.equal(await systemShown(), false);

    const { text, tokens } = await generate(page);
    assert.equal(tokens, MAX_TOKENS);
    assertSameText(text, cliText(PAGE_DEFAULTS));

    const stages = await clickToken(page, 3);
    assert.deepEqual(stages.map((s) => s.stage), ["penalties", "dry", "top-n-sigma", "top-k", "typical-p", "top-p", "min-p",
                                                  "xtc", "temperature", "chain"]);
    for (const s of stages) {
      /* where the stage kept more than the 8 listed, the grey bar is what the listed ones
       * leave: the sum is 1 by construction, and the listed ones must leave something */
      assert.ok(s.listed.length >= 1 && s.listed.length <= 8, `${s.stage}: ${s.listed.length} bars`);
      assert.ok(s.rest.length <= 1);
      assert.ok(Math.abs(sum(s.listed) + sum(s.rest) - 1) < 1e-3, `${s.stage}: the bars add up to ${sum(s.listed) + sum(s.rest)}`);
      if (s.rest.length) assert.ok(sum(s.listed) < 1 + 1e-6 && s.rest[0] >= 0, `${s.stage}: ${s.listed}`);
    }
    /* the last list is the one drawn from: the token clicked is marked in it */
    assert.equal(stages.at(-1).chosen, 1);
    mkdirSync(join(ROOT, "build"), { recursive: true });
    await page.screenshot({ path: join(ROOT, "build/playground.png") });
  });

  test("top-k 8 first in the chain: every stage lists all its candidates, and their probabilities add up to 1", async () => {
    /* With top-k first no stage keeps more than 8 candidates, so the panel lists them all
     * and each bar is the server's probability: no grey bar makes up the rest. */
    await typeInto(page, "#column-a input[data-key='top_k']", "8");
    await typeInto(page, "#column-a .chain-text", "top-k,top-p,min-p,temperature");
    assert.equal(await page.$eval("#column-a .chain-problem", (e) => e.hidden), true);
    await typeInto(page, "#seed", "7");
    const { text, tokens } = await generate(page);
    assert.equal(tokens, MAX_TOKENS);
    assertSameText(text, cliText({ ...PAGE_DEFAULTS, "seed": 7, "top-k": 8, "samplers": "top-k,top-p,min-p,temperature" }));

    let compared = 0;
    for (const i of [0, 5, MAX_TOKENS - 1]) {
      const stages = await clickToken(page, i);
      assert.deepEqual(stages.map((s) => s.stage), ["top-k", "top-p", "min-p", "temperature", "chain"]);
      for (const s of stages) {
        assert.deepEqual(s.rest, [], `token ${i}, ${s.stage}: a grey bar`);
        assert.ok(Math.abs(sum(s.listed) - 1) < 1e-3, `token ${i}, ${s.stage}: the bars add up to ${sum(s.listed)}`);
        compared++;
      }
      assert.equal(stages.at(-1).chosen, 1, `token ${i}: the token drawn is not marked in the list drawn from`);
    }
    assert.equal(compared, 15);
    await page.screenshot({ path: join(ROOT, "build/playground-top-k-first.png") });
  });

  test("a grammar and Mirostat 2.0 from the folded panels: the command line's text, which the grammar accepts", async () => {
    const grammar = 'root ::= ("cat" | "dog" | "sun") (" " [a-z]+){1,3} "."';
    await page.click(".grammar-row summary");
    await typeInto(page, "#grammar", grammar);
    await page.click("#column-a .more-samplers summary");
    await typeInto(page, "#column-a input[data-key='mirostat']", "2");
    await typeInto(page, "#column-a input[data-key='mirostat_tau']", "4");
    await typeInto(page, "#seed", "3");
    const { text } = await generate(page);
    const cli = cliText({ ...PAGE_DEFAULTS, "seed": 3, "mirostat": 2, "mirostat-ent": 4, "grammar": grammar });
    assertSameText(text, cli);
    assert.match(cli.toString("utf8"), /^(cat|dog|sun)( [a-z]+){1,3}\.$/);
    const stages = await clickToken(page, 0);
    /* Mirostat replaces the filters: of the chain only temperature runs, then its own cut */
    assert.deepEqual(stages.map((s) => s.stage), ["temperature", "mirostat", "chain"]);
    assert.equal(stages.at(-1).chosen, 1);
  });
});
