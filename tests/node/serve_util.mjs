// What the serve load test (serve_load.test.mjs) and the serve benchmark (serve_bench.mjs)
// share: starting a server process and waiting until it answers, and talking HTTP to it,
// with Node's built-ins alone (node:http, node:child_process), so that neither needs an
// `npm install`.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

// A server as a child process: its output is kept (the load test reads the sanitizers'
// reports in stderr) and `exited` resolves with its exit code and signal.
export class ServerProcess {
  constructor(command, args, env = process.env) {
    this.command = [command, ...args].join(' ');
    this.stdout = '';
    this.stderr = '';
    this.child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8').on('data', (s) => { this.stdout += s; });
    this.child.stderr.setEncoding('utf8').on('data', (s) => { this.stderr += s; });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => resolve({ code: null, signal: null, error }));
      this.child.on('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  get pid() { return this.child.pid; }

  // Resolves with the first match of `pattern` in stdout; rejects when the process ends
  // first or after timeoutMs.
  async waitForOutput(pattern, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let ended = false;
    this.exited.then(() => { ended = true; });
    for (;;) {
      const match = this.stdout.match(pattern);
      if (match) return match;
      if (ended || Date.now() > deadline) {
        throw new Error(`${this.command} ${ended ? 'ended' : 'did not print its address'} ` +
          `(stdout: ${this.stdout.trim()}; stderr: ${this.stderr.trim().slice(-2000)})`);
      }
      await sleep(50);
    }
  }

  // SIGTERM, then the exit status; SIGKILL if it has not stopped within timeoutMs.
  async stop(timeoutMs = 20000) {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const status = await this.exited;
    clearTimeout(timer);
    return status;
  }

  // The resident memory in KiB: VmRSS from /proc/PID/status.
  residentKiB() {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return Number(status.match(/^VmRSS:\s+(\d+) kB$/m)[1]);
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// `BIN serve MODEL --port 0 ARGS...`: it prints "quill serve: ... on http://HOST:PORT (N
// slots of M positions)" once it listens.
export async function startQuillServe(bin, model, args, { env, timeoutMs = 60000 } = {}) {
  const server = new ServerProcess(bin, ['serve', model, '--port', '0', ...args], env);
  const match = await server.waitForOutput(/on (http:\/\/\S+) \(.* positions\)/, timeoutMs);
  return { server, url: match[1] };
}

// A port no one listens on now: the system's pick for port 0, let go at once (for servers
// such as llama-server that print no address they chose themselves).
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

// llama.cpp's server answers /health 503 while it loads the model, 200 once it is ready.
export async function startLlamaServer(bin, model, args, { timeoutMs = 120000 } = {}) {
  const port = await freePort();
  const server = new ServerProcess(bin, ['-m', model, '--host', '127.0.0.1', '--port',
    String(port), ...args]);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  let ended = false;
  server.exited.then(() => { ended = true; });
  for (;;) {
    const health = await request(`${url}/health`).catch(() => null);
    if (health?.status === 200) return { server, url };
    if (ended || Date.now() > deadline) {
      await server.stop();
      throw new Error(`${server.command} did not become ready: ${server.stderr.slice(-2000)}`);
    }
    await sleep(200);
  }
}

// One HTTP request on its own connection (no keep-alive, so that every request of a test
// is a new client to the server). Resolves with the status, headers and body text.
export function request(url, { method = 'GET', body, timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(url, {
      method, agent: false, timeout: timeoutMs,
      headers: data === undefined ? {} : { 'Content-Type': 'application/json' },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (s) => { text += s; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

// POST a JSON body; the answer's JSON (null when it is not JSON) beside its status.
export async function postJson(url, body, options = {}) {
  const res = await request(url, { ...options, method: 'POST', body });
  let json = null;
  try { json = JSON.parse(res.text); } catch { /* left null: the caller checks it */ }
  return { ...res, json };
}

// POST a request with "stream": true and read its Server-Sent Events as they come:
// onEvent(json) is called for each `data: {...}` event, with the time since the request was
// sent; when it returns false the connection is cut there (a client going away mid-stream).
// Resolves with the status, every event, whether `data: [DONE]` came, whether the client cut
// it, and a non-200's body.
export function postStream(url, body, onEvent = () => true, { timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const out = { status: 0, headers: {}, events: [], done: false, cut: false, text: '' };
    const req = http.request(url, {
      method: 'POST', agent: false, timeout: timeoutMs,
      headers: { 'Content-Type': 'application/json' },
    }, (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (s) => {
        if (out.status !== 200) { out.text += s; return; }
        pending += s;
        let end;
        while (!out.cut && (end = pending.indexOf('\n\n')) >= 0) {
          const event = pending.slice(0, end);
          pending = pending.slice(end + 2);
          if (!event.startsWith('data: ')) continue;
          const data = event.slice(6);
          if (data === '[DONE]') { out.done = true; continue; }
          const json = JSON.parse(data);
          out.events.push(json);
          if (onEvent(json, performance.now() - start) === false) {
            out.cut = true;
            res.destroy(); // closes the socket: the server sees the client gone
            resolve(out);
          }
        }
      });
      res.on('end', () => resolve(out));
      res.on('error', (e) => (out.cut ? resolve(out) : reject(e)));
    });
    req.on('timeout', () => req.destroy(new Error(`POST ${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', (e) => (out.cut ? resolve(out) : reject(e)));
    req.end(JSON.stringify(body));
  });
}

// A streamed completion's or chat's text in one event ("" for the role, finish and usage
// chunks).
export function eventText(event) {
  const choice = event.choices?.[0];
  return choice?.text ?? choice?.delta?.content ?? '';
}
