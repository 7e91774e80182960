/*
 * quill's sampling playground: the script of index.html.
 *
 * What it does, top to bottom:
 *   1. builds a settings panel per column (sliders + number fields, the chain editor),
 *   2. on Generate, POSTs one request per column with stream: true and quill_trace: 8,
 *   3. reads the Server-Sent Events with fetch() and a stream reader (EventSource can
 *      only GET), and appends one <span> per token, tinted by the token's probability,
 *   4. on a click on a token, draws the candidate list after each stage of the chain.
 *
 * Model text is never parsed as HTML: it goes into the page with textContent only, so a
 * model that writes "<script>" shows those characters and runs nothing.
 * The server contract is in docs/playground.md.
 */
"use strict";

/* ---- The sampler settings -------------------------------------------------------------
 * One row per field of the request. `off` is the value that turns the stage off (see
 * docs/sampling.md); the defaults are quill's and llama.cpp's. The slider covers the
 * useful range; the number field beside it accepts anything in [min, max]. */
const SETTINGS = [
  { key: "temperature", label: "temperature", def: 0.8, off: null, slider: [0, 2, 0.05], min: 0, max: Infinity,
    note: "0 = greedy: always the most likely survivor" },
  { key: "top_k", label: "top-k", def: 40, off: 0, slider: [0, 200, 1], min: 0, max: Infinity, integer: true },
  { key: "typical_p", label: "typical-p", def: 1, off: 1, slider: [0, 1, 0.01], min: 0, max: 1 },
  { key: "top_p", label: "top-p", def: 0.95, off: 1, slider: [0, 1, 0.01], min: 0, max: 1 },
  { key: "min_p", label: "min-p", def: 0.05, off: 0, slider: [0, 1, 0.01], min: 0, max: 1 },
  { key: "repeat_penalty", label: "repeat penalty", def: 1, off: 1, slider: [0.5, 2, 0.01], min: 0, max: Infinity },
  { key: "presence_penalty", label: "presence penalty", def: 0, off: 0, slider: [-2, 2, 0.05], min: -Infinity, max: Infinity },
  { key: "frequency_penalty", label: "frequency penalty", def: 0, off: 0, slider: [-2, 2, 0.05], min: -Infinity, max: Infinity },
  /* the newer samplers, folded away under "more samplers" (`more: true`) */
  { key: "dry_multiplier", label: "DRY multiplier", def: 0, off: 0, slider: [0, 3, 0.05], min: 0, max: 100, more: true },
  { key: "dry_base", label: "DRY base", def: 1.75, off: null, slider: [1, 4, 0.05], min: 1, max: 100, more: true },
  { key: "dry_allowed_length", label: "DRY allowed length", def: 2, off: null, slider: [0, 10, 1], min: 0, max: Infinity,
    integer: true, more: true },
  { key: "dry_penalty_last_n", label: "DRY window (-1: all)", def: -1, off: 0, slider: [-1, 512, 1], min: -1, max: Infinity,
    integer: true, more: true },
  { key: "min_keep", label: "min keep", def: 0, off: 0, slider: [0, 20, 1], min: 0, max: Infinity, integer: true, more: true,
    note: "the fewest candidates top-p, min-p, typical-p and XTC leave (0 and 1 keep one)" },
  { key: "top_n_sigma", label: "top-n-sigma", def: -1, off: -1, slider: [-1, 5, 0.1], min: -1, max: 100, more: true },
  { key: "xtc_probability", label: "XTC probability", def: 0, off: 0, slider: [0, 1, 0.01], min: 0, max: 1, more: true },
  { key: "xtc_threshold", label: "XTC threshold", def: 0.1, off: null, slider: [0, 0.5, 0.01], min: 0, max: 1, more: true,
    note: "above 0.5 XTC is off: two candidates cannot both reach it" },
  { key: "dynatemp_range", label: "dyn. temperature range", def: 0, off: 0, slider: [0, 2, 0.05], min: 0, max: 100, more: true },
  { key: "dynatemp_exponent", label: "dyn. temperature exponent", def: 1, off: null, slider: [0.1, 4, 0.1], min: 0, max: 100, more: true },
  { key: "mirostat", label: "mirostat (1 or 2)", def: 0, off: 0, slider: [0, 2, 1], min: 0, max: 2, integer: true, more: true,
    note: "replaces the filters and penalties: only logit-bias, bad-words and temperature run before it" },
  { key: "mirostat_tau", label: "mirostat tau", def: 5, off: null, slider: [0, 10, 0.1], min: 0, max: 100, more: true },
  { key: "mirostat_eta", label: "mirostat eta", def: 0.1, off: null, slider: [0, 1, 0.01], min: 0, max: 100, more: true },
];

/* The stage names the server's `samplers` field accepts, in the default order
 * (llama.cpp's). A stage left out of the chain does not run. */
const STAGES = ["logit-bias", "bad-words", "penalties", "dry", "top-n-sigma", "top-k", "typical-p", "top-p",
                "min-p", "xtc", "temperature"];
const DEFAULT_CHAIN = ["penalties", "dry", "top-n-sigma", "top-k", "typical-p", "top-p", "min-p", "xtc",
                       "temperature"];

/* What each stage does, in short (the long version, with formulas and papers, is
 * docs/sampling.md). "chain" is the list the final draw picks from. */
const STAGE_HELP = {
  "logit-bias": "Adds a fixed bias to chosen tokens' logits; a bias of -inf bans a token.",
  "bad-words": "Bans a word's last token when the tokens before it were just written, so the phrase can never be completed.",
  "penalties": "Lowers the logits of tokens already in the recent window: the repeat penalty divides (or multiplies) once, frequency subtracts per occurrence, presence subtracts once.",
  "top-k": "Keeps the k most likely tokens and drops the rest (Fan et al. 2018).",
  "typical-p": "Keeps the tokens whose surprise is closest to the average surprise (the entropy) until their mass reaches typical-p; it can drop the most likely token (Meister et al. 2022).",
  "top-p": "Keeps the smallest set of most likely tokens whose probability reaches top-p: the nucleus (Holtzman et al. 2019).",
  "min-p": "Keeps the tokens at least min-p times as likely as the most likely one, so the cut follows the model's confidence (Nguyen et al. 2024).",
  "dry": "Lowers the logit of each token that would continue a stretch of text already written, the more the longer that stretch, and lets a repeat start over after a newline, a colon, a quote or an asterisk (p-e-w 2024).",
  "top-n-sigma": "Keeps the tokens whose logit is within n standard deviations of the largest logit, a cut that ignores how the tail is spread (Tang et al. 2024).",
  "xtc": "With the chance XTC probability, removes every candidate above the threshold except the least likely of them, steering away from the obvious choice (Weidmann 2024).",
  "mirostat": "Cuts the candidates by a bound mu on their surprise (2.0: those above mu), draws, then moves mu towards the target surprise tau, so the text keeps a steady perplexity (Basu et al. 2021).",
  "temperature": "Divides the survivors' logits by T: below 1 sharpens the distribution, above 1 flattens it. It runs last, so it only reweights tokens the filters kept.",
  "chain": "The list the token is drawn from: a random draw with the seed's generator, or the most likely token when the temperature is 0 (greedy).",
};

const $ = (selector, root = document) => root.querySelector(selector);

/* A new element with a class and, optionally, text. Text is set with textContent: safe
 * for model output. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/* ---- Settings panels ------------------------------------------------------------------ */

/* One slider + number field pair, kept in sync; returns a function that reads the value. */
function buildSettingRow(container, setting) {
  const row = el("div", "setting");
  const label = el("label", "", setting.label);
  const offMark = el("span", "off-mark", "off");
  const slider = el("input");
  Object.assign(slider, { type: "range", min: setting.slider[0], max: setting.slider[1],
                          step: setting.slider[2], value: setting.def });
  const number = el("input");
  Object.assign(number, { type: "number", step: setting.slider[2], value: setting.def });
  slider.setAttribute("aria-label", setting.label);
  number.setAttribute("aria-label", setting.label + " value");
  number.dataset.key = setting.key;

  /* "off" is shown when the value turns the stage off, so the learner sees which
   * settings do nothing right now. Temperature has no off: 0 means greedy. */
  const showOff = () => {
    const isOff = setting.off !== null && Number(number.value) === setting.off;
    const greedy = setting.key === "temperature" && Number(number.value) === 0;
    offMark.textContent = greedy ? "greedy" : "off";
    offMark.hidden = !(isOff || greedy);
  };
  slider.addEventListener("input", () => { number.value = slider.value; showOff(); });
  number.addEventListener("input", () => { slider.value = number.value; showOff(); });
  showOff();

  label.append(" ", offMark);
  if (setting.note) label.title = setting.note;
  row.append(label, slider, number);
  container.append(row);
  return () => number.value;
}

/* The chain editor: the stages as a list, each with a checkbox (in the chain or not) and
 * up/down buttons, plus a text field holding the same chain as the server's string
 * ("penalties,top-k,..."). Either can be edited; the text is checked against STAGES. */
function buildChainEditor(container) {
  const box = el("div", "chain");
  box.append(el("div", "chain-title", "chain order (top runs first)"));
  const list = el("ol", "chain-list");
  const text = el("input", "chain-text");
  text.type = "text";
  text.setAttribute("aria-label", "chain as text");
  const problem = el("div", "chain-problem");
  problem.hidden = true;

  /* The state: every stage once, in order, with a flag. Enabled stages form the chain. */
  let order = DEFAULT_CHAIN.concat(STAGES.filter((s) => !DEFAULT_CHAIN.includes(s)))
                           .map((name) => ({ name, on: DEFAULT_CHAIN.includes(name) }));
  const chainString = () => order.filter((s) => s.on).map((s) => s.name).join(",");

  function renderList() {
    list.replaceChildren();
    order.forEach((stage, i) => {
      const item = el("li", stage.on ? "" : "stage-off");
      const check = el("input");
      check.type = "checkbox";
      check.checked = stage.on;
      check.setAttribute("aria-label", "run " + stage.name);
      check.addEventListener("change", () => { stage.on = check.checked; update(); });
      const up = el("button", "move", "↑");
      const down = el("button", "move", "↓");
      up.type = down.type = "button";
      up.disabled = i === 0;
      down.disabled = i === order.length - 1;
      up.addEventListener("click", () => { swap(i, i - 1); });
      down.addEventListener("click", () => { swap(i, i + 1); });
      item.append(check, el("span", "stage-name", stage.name), up, down);
      list.append(item);
    });
  }
  function swap(i, j) {
    [order[i], order[j]] = [order[j], order[i]];
    update();
  }
  function update() {
    renderList();
    text.value = chainString();
    problem.hidden = true;
  }

  /* Typing a chain: accepted when every name is a stage and none repeats; the list then
   * shows it, with the stages left out unticked at the end. */
  text.addEventListener("input", () => {
    const names = text.value.split(",").map((s) => s.trim()).filter((s) => s !== "");
    const unknown = names.find((n) => !STAGES.includes(n));
    const repeated = names.find((n, i) => names.indexOf(n) !== i);
    if (unknown !== undefined || repeated !== undefined) {
      problem.textContent = unknown !== undefined
        ? `unknown stage "${unknown}"; the stages are ${STAGES.join(", ")}`
        : `"${repeated}" appears twice; each stage runs at most once`;
      problem.hidden = false;
      return;
    }
    problem.hidden = true;
    order = names.map((name) => ({ name, on: true }))
                 .concat(STAGES.filter((s) => !names.includes(s)).map((name) => ({ name, on: false })));
    renderList();
  });

  update();
  box.append(list, text, problem);
  container.append(box);
  /* The chain to send, or null while the text field holds a bad chain. */
  return () => (problem.hidden ? chainString() : null);
}

/* Builds a column's settings; returns a function that reads them as request fields. */
function buildSettings(column) {
  const container = $(".settings", column);
  const more = el("details", "more-samplers");
  more.append(el("summary", "", "more samplers: DRY, min keep, top-n-sigma, XTC, dynamic temperature, Mirostat"));
  const readers = SETTINGS.map((s) => [s, buildSettingRow(s.more ? more : container, s)]);
  container.append(more);
  const readChain = buildChainEditor(container);
  return () => {
    const fields = {};
    for (const [setting, read] of readers) {
      fields[setting.key] = checkedNumber(setting.label, read(), setting.min, setting.max, setting.integer);
    }
    const chain = readChain();
    if (chain === null) throw new Error("the chain order is not valid (see the message under it)");
    fields.samplers = chain;
    return fields;
  };
}

/* A number field's value as a number, or an error that names the field. */
function checkedNumber(name, raw, min, max, integer = false) {
  const value = Number(raw);
  if (raw === "" || !Number.isFinite(value)) throw new Error(`${name} must be a number`);
  if (integer && !Number.isInteger(value)) throw new Error(`${name} must be a whole number`);
  if (value < min) throw new Error(`${name} must be >= ${min}`);
  if (value > max) throw new Error(`${name} must be <= ${max}`);
  return value;
}

/* ---- Reading a Server-Sent Events stream ----------------------------------------------
 * The body is a series of events separated by a blank line; each event here is one
 * "data: {json}" line, and the last is "data: [DONE]". Network reads split the text
 * anywhere (even inside a UTF-8 character: TextDecoder's stream mode keeps the partial
 * bytes), so text is buffered until a blank line closes an event. */
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value, { stream: !done });
      const events = buffer.split(/\r?\n\r?\n/);
      buffer = done ? "" : events.pop(); /* the last piece may be an unfinished event */
      for (const event of events) {
        const data = event.split(/\r?\n/)
                          .filter((line) => line.startsWith("data:"))
                          .map((line) => line.slice(5).replace(/^ /, ""))
                          .join("\n");
        if (data === "") continue;          /* a comment or keep-alive line */
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
      if (done) return;
    }
  } finally {
    reader.cancel().catch(() => {}); /* closes the connection when we stop reading early */
  }
}

/* The error message in an OpenAI-style body {"error": {"message": ...}}, or the status. */
async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return `${response.status}: ${body.error.message}`;
  } catch (_) { /* not JSON: fall through */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

/* ---- One run: a request and its column ------------------------------------------------ */

/* Background tint for a token drawn with probability p: red (unlikely) through yellow to
 * green (near certain). Light enough for black text to stay readable. */
function tint(p) {
  const hue = Math.round(120 * Math.min(Math.max(p, 0), 1));
  return `hsl(${hue}, 75%, 82%)`;
}

/* Whitespace made visible for the candidate labels: a bar labelled " " says nothing. */
function visible(text) {
  return text.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥") || "∅";
}

/* Streams one request into a column. `timing` collects the figures shown above the text:
 * time to first token (request sent -> first token arrived) and tokens/s over the tokens
 * after the first (the first one's wait is the prompt's processing, counted in TTFT). */
async function run(column, url, body, signal) {
  const output = $(".output", column);
  const stats = $(".stats", column);
  output.replaceChildren();
  stats.textContent = "waiting for the first token…";
  const start = performance.now();
  let first = null, last = null, tokens = 0, finish = null;

  const showStats = () => {
    const parts = [];
    if (first !== null) parts.push(`first token ${(first - start).toFixed(0)} ms`);
    if (tokens > 1 && last > first) parts.push(`${((tokens - 1) / ((last - first) / 1000)).toFixed(1)} tokens/s`);
    parts.push(`${tokens} tokens`);
    if (finish) parts.push(`finish: ${finish}`);
    stats.textContent = parts.join(" · ");
  };

  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    await readEvents(response, onChunk);
  } catch (e) {
    finish = e.name === "AbortError" ? "stopped" : "error";
    throw e;
  } finally {
    showStats();
  }

  function onChunk(chunk) {
    if (chunk.error) throw new Error(chunk.error.message || "the server reported an error");
    const choice = chunk.choices && chunk.choices[0];
    if (!choice) return;
    /* completions send the text in `text`, chat completions in `delta.content`. */
    const text = (choice.delta ? choice.delta.content : choice.text) || "";
    if (choice.quill_token) {
      last = performance.now();
      if (first === null) first = last;
      tokens += 1;
      output.append(tokenSpan(text, choice.quill_token, choice.quill_stages || []));
    } else if (text !== "") {
      output.append(document.createTextNode(text)); /* text with no token (e.g. a flush) */
    }
    if (choice.finish_reason) finish = choice.finish_reason;
    showStats();
  }
}

/* The probability a token was drawn with, as a number for its tint and as text. The
 * server sends it when the token is among the final list's candidates it shows, and null
 * when a random draw took one further down: then it is at most the smallest probability
 * shown, which stands in for it, written "≤". */
function drawnProbability(token, stages) {
  if (typeof token.p === "number") return { p: token.p, text: `p = ${token.p.toFixed(4)}` };
  const shown = stages.length ? stages[stages.length - 1].top || [] : [];
  const bound = shown.length ? Math.min(...shown.map((c) => c.p)) : 0;
  return { p: bound, text: `p ≤ ${bound.toFixed(4)}, below the candidates shown` };
}

/* One generated token. Its text can be empty: the server holds text back while it could
 * still be the start of a stop string or of an unfinished UTF-8 character, and sends it
 * with a later token; CSS then shows a small mark so the token can still be clicked. */
function tokenSpan(text, token, stages) {
  const span = el("span", text === "" ? "tok held" : "tok", text);
  const drawn = drawnProbability(token, stages);
  span.style.backgroundColor = tint(drawn.p);
  span.title = `token ${token.id}, ${drawn.text}` +
               (text === "" ? " (its text comes with a later token)" : "");
  span.tabIndex = 0;
  const open = () => showPanel(span, text, token, stages);
  span.addEventListener("click", open);
  span.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  return span;
}

/* ---- The candidate panel --------------------------------------------------------------- */

function showPanel(span, text, token, stages) {
  document.querySelectorAll(".tok.selected").forEach((t) => t.classList.remove("selected"));
  span.classList.add("selected");
  $("#panel-title").textContent = `“${visible(text)}” — token ${token.id}, drawn with ${drawnProbability(token, stages).text}`;
  const box = $("#panel-stages");
  box.replaceChildren();
  if (stages.length === 0) box.append(el("p", "", "The server sent no trace for this token."));
  let before = null;
  for (const stage of stages) {
    box.append(stageChart(stage, token.id, before));
    before = stage.n_survivors;
  }
  $("#panel").hidden = false;
}

/* One stage: its name, how many candidates it kept (and had), what it does, and a bar per
 * candidate. When more survived than the server listed, one more bar holds the rest of
 * the probability, so the bars of a stage always add up to 1. */
function stageChart(stage, chosenId, before) {
  const section = el("section", "stage");
  section.dataset.stage = stage.stage;
  const head = el("h3", "", stage.stage === "chain" ? "drawn from" : `after ${stage.stage}`);
  const kept = before === null || stage.stage === "chain"
    ? `${stage.n_survivors} candidates`
    : `${stage.n_survivors} of ${before} candidates kept`;
  head.append(" ", el("span", "kept", kept));
  section.append(head, el("p", "help", STAGE_HELP[stage.stage] || ""));

  const bars = el("div", "bars");
  const top = stage.top || [];
  let shown = 0;
  for (const c of top) {
    /* A logit of -inf (a banned token) cannot be written in JSON: it comes as null. */
    const logit = typeof c.logit === "number" ? c.logit.toFixed(3) : "-inf";
    bars.append(barRow(visible(c.text), c.p, c.token === chosenId, `token ${c.token}, logit ${logit}`));
    shown += c.p;
  }
  const rest = stage.n_survivors - top.length;
  const chosenShown = top.some((c) => c.token === chosenId);
  if (rest > 0) {
    bars.append(barRow(`(${rest} more)`, Math.max(0, 1 - shown), false, "the other survivors together", "rest"));
  }
  section.append(bars);
  if (!chosenShown) {
    section.append(el("p", "help", rest > 0
      ? "The drawn token is not among the most likely shown here: it is one of the rest."
      : "The drawn token is not in this list."));
  }
  return section;
}

function barRow(label, p, chosen, title, extraClass = "") {
  const row = el("div", `bar-row ${chosen ? "chosen" : ""} ${extraClass}`);
  row.title = title;
  row.dataset.p = String(p);
  const name = el("span", "bar-label", (chosen ? "★ " : "") + label);
  const track = el("span", "bar-track");
  const bar = el("span", "bar");
  bar.style.width = `${(100 * p).toFixed(2)}%`;
  track.append(bar);
  row.append(name, track, el("span", "bar-value", p.toFixed(4)));
  return row;
}

/* ---- Wiring ---------------------------------------------------------------------------- */

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = message === "";
}

/* The request body for one column: the shared fields (prompt or messages, seed, limits)
 * and the column's sampler settings. */
function requestBody(readSettings) {
  const chat = $("#chat-mode").checked;
  const body = {
    max_tokens: checkedNumber("max tokens", $("#max-tokens").value, 1, Infinity, true),
    seed: checkedNumber("seed", $("#seed").value, 0, Number.MAX_SAFE_INTEGER, true),
    ...readSettings(),
    stream: true,
    quill_trace: 8,
  };
  const stop = $("#stop").value;
  if (stop !== "") body.stop = stop;
  const grammar = $("#grammar").value;
  if (grammar.trim() !== "") body.grammar = grammar;
  if (chat) {
    const system = $("#system").value.trim();
    body.messages = (system ? [{ role: "system", content: system }] : [])
      .concat([{ role: "user", content: $("#prompt").value }]);
  } else {
    body.prompt = $("#prompt").value;
  }
  return { url: chat ? "/v1/chat/completions" : "/v1/completions", body };
}

async function checkHealth() {
  const badge = $("#health");
  try {
    const response = await fetch("/health");
    badge.textContent = response.ok ? "server ready" : `server: ${response.status}`;
    badge.className = response.ok ? "health ok" : "health bad";
  } catch (_) {
    badge.textContent = "server unreachable";
    badge.className = "health bad";
  }
}

function main() {
  const columns = [$("#column-a"), $("#column-b")];
  const readers = columns.map(buildSettings);
  const generate = $("#generate");
  const stopButton = $("#stop-button");
  let controller = null;

  $("#chat-mode").addEventListener("change", (e) => { $("#system-row").hidden = !e.target.checked; });
  $("#compare-mode").addEventListener("change", (e) => { columns[1].hidden = !e.target.checked; });
  $("#panel-close").addEventListener("click", () => { $("#panel").hidden = true; });
  /* Ctrl+Enter (Cmd+Enter on a Mac) in the prompt generates, as in most playgrounds. */
  $("#prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !generate.disabled) generate.click();
  });

  /* Compare mode sends both requests at once: the server decodes them together, and each
   * column shows its own timing. */
  generate.addEventListener("click", async () => {
    showError("");
    const active = $("#compare-mode").checked ? [0, 1] : [0];
    let requests;
    try {
      requests = active.map((i) => requestBody(readers[i]));
    } catch (e) {
      showError(e.message);
      return;
    }
    controller = new AbortController();
    generate.disabled = true;
    stopButton.disabled = false;
    $("#panel").hidden = true;
    const results = await Promise.allSettled(active.map((i) =>
      run(columns[i], requests[i].url, requests[i].body, controller.signal)));
    const failed = results.find((r) => r.status === "rejected" && r.reason.name !== "AbortError");
    if (failed) showError(failed.reason.message);
    generate.disabled = false;
    stopButton.disabled = true;
  });

  /* Stop aborts the fetches; the server sees the connection close and frees the slots. */
  stopButton.addEventListener("click", () => { if (controller) controller.abort(); });

  checkHealth();
}

main();
