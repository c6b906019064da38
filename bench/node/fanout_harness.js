// Load generator for bench/fanout.py (adapted from the fan-out anchors' harness.js).
//
// For each subscriber count N in --levels (ascending), it tops the pool of WebSocket
// subscribers on ws://127.0.0.1:PORT/doc.html up to N, then:
//   warm-up  : --warmup PUTs, each sent once the previous one has reached every subscriber
//              (not counted in the figures; it also measures the fan-out time, i.e. PUT
//              to the last subscriber's receipt);
//   paced    : PUTs at a fixed interval: --interval ms, stretched to 2x the warm-up's p90
//              fan-out time if that is longer (so PUTs do not queue behind each other and
//              the latency is not a queueing figure), and at most --paced-max-s seconds;
//   burst    : --burst-total PUTs (fewer for large N: at most --burst-deliveries
//              deliveries) in bursts of --burst-size sent back to back (up to
//              --concurrency in flight on keep-alive HTTP connections); the next burst
//              starts once the previous one has been delivered to all N subscribers and
//              every PUT has been answered (closed loop).
// The publisher is an HTTP `PUT /doc.html` with `Range: selector=#x`; its body carries
// a sequence number, so every StreamItem is matched to the PUT that caused it.
// Latency = subscriber receive time - time the PUT was handed to Node's http client,
// both CLOCK_MONOTONIC (process.hrtime). Server CPU = utime+stime of /proc/PID/stat
// (all threads, including the fsync worker thread) and the sum of the threads'
// schedstat, read before each measured phase and 200 ms after it ends; --pid A,B sums
// several server processes. Harness CPU is this process's and its sinks'.
// With --sinks K, K more Node processes (this script with --role sink) hold their share
// of the subscribers, so that one process's receive loop does not bound the figures at
// large N; they time receipts on the same monotonic clock (CLOCK_MONOTONIC) and report
// them at the end of each phase.
// Prints one JSON line on stdout.
'use strict';
const WebSocket = require('ws');
const http = require('http');
const fs = require('fs');
const { fork } = require('child_process');
// CLOCK_MONOTONIC in ms: the same clock in every process of the harness
const now = () => Number(process.hrtime.bigint()) / 1e6;

const A = {};
for (let i = 2; i < process.argv.length; i += 2) A[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const PORT = +A.port;
const PIDS = String(A.pid).split(',').map(Number); // the server's processes
const LEVELS = (A.levels || '0,1,100,1000').split(',').map(Number);
const WARMUP = +(A.warmup || 20);
const PACED_MAX = +(A.paced || 200);
const INTERVAL_MIN = +(A.interval || 20);
const PACED_MAX_S = +(A['paced-max-s'] || 8);
const BURST_MAX = +(A['burst-total'] || 500);
const BURST_DELIVERIES = +(A['burst-deliveries'] || 200000);
const BURST_SIZE = +(A['burst-size'] || 50);
const CONCURRENCY = +(A.concurrency || 4);
const IDLE_MS = +(A['idle-ms'] || 1000);
const CLK_TCK = +(A['clk-tck'] || 100);
const PAD = +(A.pad || 40);
const PATH = A.path || '/doc.html';
const DEFLATE = A.deflate === '1';   // subscribers offer permessage-deflate (as browsers do)
const SINKS = +(A.sinks || 0);       // extra subscriber processes
const MARK = Buffer.from('seq=');
const seqOf = (data) => {
  const at = data.indexOf(MARK);
  if (at < 0) return -1;
  let s = 0;
  for (let k = at + 4; k < at + 12; k++) s = s * 10 + (data[k] - 48);
  return s;
};
function open(onMessage) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${A.port}${A.path || '/doc.html'}`, { perMessageDeflate: DEFLATE, skipUTF8Validation: true });
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
    ws.on('message', onMessage);
  });
}
async function openMany(clients, n, onMsg) {
  let next = clients.length;
  const worker = async () => { while (next < n) { const i = next++; clients[i] = await open((d) => onMsg(i, d)); } };
  await Promise.all(Array.from({ length: Math.min(50, Math.max(0, n - clients.length)) }, worker));
}

if (A.role === 'sink') {
  // One share of the subscribers: report when all of them have an item, and the
  // receipt times when asked.
  const clients = [];
  let base = 0, pos = null, order = null, ooo = 0, cnt = null, rs = [], rt = [];
  const onMsg = (i, data) => {
    const t = now();
    const s = seqOf(data) - base;
    if (s < 0 || cnt === null || s >= cnt.length) return;
    const p = pos[i]++;
    if (order[p] < 0) order[p] = s; else if (order[p] !== s) ooo++;
    rs.push(s); rt.push(t);
    if (++cnt[s] === clients.length) process.send({ done: s, n: clients.length, t });
  };
  process.on('message', async (m) => {
    if (m.open !== undefined) { await openMany(clients, m.open, onMsg); process.send({ opened: clients.length }); }
    else if (m.reset !== undefined) {
      base = m.reset; cnt = new Int32Array(m.perLevel); pos = new Int32Array(clients.length);
      order = new Int32Array(m.perLevel).fill(-1); ooo = 0; rs = []; rt = [];
      process.send({ reset: true });
    } else if (m.collect !== undefined) {
      const lat = [], keepS = [], keepT = [];
      for (let k = 0; k < rs.length; k++) {
        const s = rs[k];
        if (s >= m.from && s < m.to) lat.push(rt[k] - m.sendT[s - m.from]); else { keepS.push(s); keepT.push(rt[k]); }
      }
      rs = keepS; rt = keepT;
      process.send({ lat, ooo });
    } else if (m.exit) { for (const c of clients) c.terminate(); setTimeout(() => process.exit(0), 50); }
  });
  return;
}
const HOST = '127.0.0.1';
const PER_LEVEL = WARMUP + PACED_MAX + BURST_MAX;
let PACED = PACED_MAX, INTERVAL = INTERVAL_MIN, BURST_TOTAL = BURST_MAX; // per level

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sinks = [];
for (let k = 0; k < SINKS; k++) {
  const child = fork(__filename, process.argv.slice(2).concat(['--role', 'sink']),
                     { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  child.on('message', (m) => {
    if (m.done !== undefined) sinkDone(m);
    else if (child.pending) { const r = child.pending; child.pending = null; r(m); }
  });
  sinks.push(child);
}
const ask = (child, msg) => new Promise((r) => { child.pending = r; child.send(msg); });
function sinkDone(m) {             // a sink's share of the subscribers all have item m.done
  const s = m.done;
  if (s < 0 || s >= PER_LEVEL) return;
  const P = phases[phaseOf[s]];
  delivered += m.n;
  if (m.t > P.lastRecv) P.lastRecv = m.t;
  if (phaseOf[s] === 0 && m.t > P.lastRecvOf[s]) P.lastRecvOf[s] = m.t;
  check();
}
async function collect(idx) {      // the sinks' receipt times of phase idx, as latencies
  const lo = idx === 0 ? 0 : idx === 1 ? WARMUP : WARMUP + PACED;
  const hi = idx === 0 ? WARMUP : idx === 1 ? WARMUP + PACED : PER_LEVEL;
  const P = phases[idx];
  for (const c of sinks) {
    const m = await ask(c, { collect: idx, from: lo, to: hi, sendT: Array.from(sendT.subarray(lo, hi)) });
    for (const v of m.lat) P.lat[P.count++] = v;
    if (idx === 2) ooo += m.ooo;
  }
}
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

// ---- per-level state -------------------------------------------------------------
let N = 0, base = 0;             // subscribers, first seq of the level
let sendT, putDone, phaseOf, phases, pos, order, ooo, delivered, answered, waiter, frameBytes;
function resetLevel(n, seqBase) {
  N = n; base = seqBase;
  sendT = new Float64Array(PER_LEVEL);
  putDone = new Float64Array(PER_LEVEL);
  phaseOf = new Uint8Array(PER_LEVEL);
  setPhases(PACED_MAX);
  phases = [WARMUP, PACED_MAX, BURST_MAX].map((cnt) => ({
    lat: new Float64Array(Math.max(1, n) * cnt), count: 0, lastRecv: 0, lastRecvOf: new Float64Array(cnt),
    put: new Float64Array(cnt), puts: 0, lastPut: 0, errors: 0,
  }));
  pos = new Int32Array(n);       // how many items subscriber i has had in this level
  order = new Int32Array(PER_LEVEL).fill(-1); // the order the first receiver saw
  ooo = 0; delivered = 0; answered = 0; waiter = null; frameBytes = 0;
}

function setPhases(paced) {
  PACED = paced;
  for (let s = 0; s < PER_LEVEL; s++) phaseOf[s] = s < WARMUP ? 0 : s < WARMUP + PACED ? 1 : 2;
}
function onMsg(i, data) {
  const t = now();
  if (i >= N) return;            // not part of this level (cannot happen: levels only grow)
  let s = seqOf(data);
  if (s < 0) return;             // not a StreamItem of ours
  s -= base;
  if (s < 0 || s >= PER_LEVEL) return; // a late item of a previous level
  if (!frameBytes) frameBytes = data.length;
  const p = pos[i]++;
  if (order[p] < 0) order[p] = s; else if (order[p] !== s) ooo++;
  const P = phases[phaseOf[s]];
  P.lat[P.count++] = t - sendT[s];
  if (t > P.lastRecv) P.lastRecv = t;
  if (phaseOf[s] === 0 && t > P.lastRecvOf[s]) P.lastRecvOf[s] = t;
  delivered++;
  check();
}
function check() {
  if (waiter !== null && delivered >= waiter.deliveries && answered >= waiter.puts) {
    const w = waiter; waiter = null; w.resolve(true);
  }
}
function waitFor(deliveries, puts, timeoutMs) {
  if (delivered >= deliveries && answered >= puts) return Promise.resolve(true);
  return new Promise((resolve) => {
    const to = setTimeout(() => { waiter = null; resolve(false); }, timeoutMs);
    waiter = { deliveries, puts, resolve: (v) => { clearTimeout(to); resolve(v); } };
  });
}

const FILL = 'x'.repeat(PAD);
function put(s) {
  const seq = String(base + s).padStart(8, '0');
  const body = Buffer.from(`<div id="x"><b>seq=${seq}</b> ${FILL}</div>`);
  const req = http.request({
    host: HOST, port: PORT, path: PATH, method: 'PUT', agent,
    headers: { 'Range': 'selector=#x', 'Content-Type': 'text/html', 'Content-Length': body.length },
  }, (res) => {
    res.resume();
    res.on('end', () => {
      const t = now();
      const P = phases[phaseOf[s]];
      if (res.statusCode >= 300) P.errors++;
      P.put[P.puts++] = t - sendT[s];
      P.lastPut = t;
      answered++;
      check();
    });
  });
  req.on('error', (e) => { console.error('PUT error', e.message); phases[phaseOf[s]].errors++; answered++; check(); });
  sendT[s] = now();
  req.end(body);
}

// ---- measurement helpers (as in the anchors' harness) ------------------------------
function statTicks(pid) {          // [utime, stime] of a process, in clock ticks
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return [+f[11], +f[12]];
}
function serverCpu() {             // summed over the server's processes (--pid A,B,...)
  let user = 0, sys = 0, ns = 0, threads = 0;
  for (const pid of PIDS) {
    const [u, k] = statTicks(pid);
    user += u; sys += k;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try { ns += +fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]; threads++; } catch (e) {}
    }
  }
  return { us_stat: (user + sys) * 1e6 / CLK_TCK, us_user: user * 1e6 / CLK_TCK,
           us_sys: sys * 1e6 / CLK_TCK, us_sched: ns / 1e3, threads };
}
function serverRssMB() {
  let kb = 0;
  for (const pid of PIDS) {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) kb += +m[1];
  }
  return kb / 1024;
}
function procCpuUs(pid) {         // utime+stime of a process in µs (0 once it has gone)
  try { const [u, k] = statTicks(pid); return (u + k) * 1e6 / CLK_TCK; } catch (e) { return 0; }
}
// the harness's CPU in µs: this process and its sinks (the receiving side of every delivery)
const hcpu = () => { const u = process.cpuUsage(); return sinks.reduce((t, c) => t + procCpuUs(c.pid), u.user + u.system); };
function pct(arr, n) {
  const a = arr.subarray(0, n).sort();
  const q = (p) => (n ? a[Math.min(n - 1, Math.floor(p * (n - 1)))] : null);
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: n ? a[n - 1] : null, min: n ? a[0] : null };
}

async function measured(idx, fn, puts) {
  const c0 = serverCpu(), h0 = hcpu(), w0 = now();
  const ok = await fn();
  const w1 = now();
  const c1a = serverCpu(), h1 = hcpu();
  await sleep(200);
  const c1 = serverCpu();
  await collect(idx);
  const P = phases[idx];
  const d = P.count;
  const r = {
    complete: ok, puts, put_errors: P.errors, deliveries: d, expected: N * puts, missing: N * puts - d,
    wall_s: (w1 - w0) / 1e3,
    server_cpu_us_stat: c1.us_stat - c0.us_stat,
    server_cpu_us_user: c1.us_user - c0.us_user,
    server_cpu_us_sys: c1.us_sys - c0.us_sys,
    server_cpu_us_sched: c1.us_sched - c0.us_sched,
    harness_cpu_us: h1 - h0,
  };
  r.server_us_per_put = r.server_cpu_us_sched / puts;
  r.server_us_per_put_stat = r.server_cpu_us_stat / puts;
  r.server_us_per_delivery = d ? r.server_cpu_us_sched / d : null;
  r.server_us_per_delivery_stat = d ? r.server_cpu_us_stat / d : null;
  r.harness_us_per_delivery = d ? r.harness_cpu_us / d : null;
  r.server_sys_fraction = r.server_cpu_us_stat ? r.server_cpu_us_sys / r.server_cpu_us_stat : null;
  r.server_util = (c1a.us_sched - c0.us_sched) / (w1 - w0) / 1e3;
  r.harness_util = r.harness_cpu_us / (w1 - w0) / 1e3;
  r.latency_ms = pct(P.lat, d);
  r.put_response_ms = pct(P.put, P.puts);
  return r;
}

(async () => {
  const out = { levels: [], warmup: WARMUP, paced: PACED, interval_ms: INTERVAL, burst_total: BURST_TOTAL,
                burst_size: BURST_SIZE, concurrency: CONCURRENCY, pad: PAD };
  const clients = [];
  resetLevel(0, 0);
  out.server_rss_mb_start = serverRssMB();
  for (let li = 0; li < LEVELS.length; li++) {
    const n = LEVELS[li];
    const L = { n };
    const tc = now();
    const share = Math.floor(n / (SINKS + 1));  // each sink's subscribers; the rest are ours
    await Promise.all([openMany(clients, n - share * SINKS, onMsg), ...sinks.map((c) => ask(c, { open: share }))]);
    L.connect_s = (now() - tc) / 1e3;
    L.processes = SINKS + 1;
    resetLevel(n, li * PER_LEVEL);
    await Promise.all(sinks.map((c) => ask(c, { reset: li * PER_LEVEL, perLevel: PER_LEVEL })));
    await sleep(500);
    L.server_rss_mb_connected = serverRssMB();
    const i0 = serverCpu();
    await sleep(IDLE_MS);
    const i1 = serverCpu();
    L.server_idle_cpu_pct = (i1.us_sched - i0.us_sched) / (IDLE_MS * 1e3) * 100;
    L.server_threads = i1.threads;

    let wok = true;
    for (let s = 0; s < WARMUP; s++) { put(s); wok = (await waitFor(N * (s + 1), s + 1, 20000)) && wok; await sleep(5); }
    L.warmup_complete = wok;
    await collect(0);
    const W = phases[0];
    const fan = new Float64Array(WARMUP);
    for (let s = 0; s < WARMUP; s++) fan[s] = N ? W.lastRecvOf[s] - sendT[s] : W.put[s];
    L.warmup_fanout_ms = pct(fan, WARMUP);  // PUT sent -> last subscriber has the item, unloaded
    L.warmup_latency_ms = pct(W.lat, W.count);
    INTERVAL = Math.max(INTERVAL_MIN, Math.ceil(2 * L.warmup_fanout_ms.p90 / 5) * 5);
    setPhases(Math.max(10, Math.min(PACED_MAX, Math.floor(PACED_MAX_S * 1000 / INTERVAL))));
    BURST_TOTAL = N ? Math.max(BURST_SIZE, Math.min(BURST_MAX, Math.floor(BURST_DELIVERIES / N / BURST_SIZE) * BURST_SIZE)) : BURST_MAX;
    L.paced_interval_ms = INTERVAL; L.paced_puts = PACED; L.burst_puts = BURST_TOTAL;
    await sleep(300);

    L.paced_phase = await measured(1, async () => {
      const t0 = now();
      for (let j = 0; j < PACED; j++) {
        const dly = t0 + j * INTERVAL - now();
        if (dly > 0) await sleep(dly);
        put(WARMUP + j);
      }
      return waitFor(N * (WARMUP + PACED), WARMUP + PACED, 30000);
    }, PACED);
    await sleep(300);

    let firstSend = 0;
    L.burst_phase = await measured(2, async () => {
      let s = WARMUP + PACED_MAX, ok = true;
      firstSend = now();
      for (let b = 0; b < BURST_TOTAL / BURST_SIZE; b++) {
        for (let j = 0; j < BURST_SIZE; j++) put(s++);
        const sent = WARMUP + PACED + (s - WARMUP - PACED_MAX); // PUTs of this level so far
        ok = (await waitFor(N * sent, sent, 60000)) && ok;
        if (!ok) break;
      }
      return ok;
    }, BURST_TOTAL);
    const B = phases[2];
    L.burst_phase.puts_per_s = B.puts / ((B.lastPut - firstSend) / 1e3);
    L.burst_phase.deliveries_per_s = N ? B.count / ((B.lastRecv - firstSend) / 1e3) : 0;
    L.out_of_order = ooo;
    L.frame_bytes = frameBytes;
    L.server_rss_mb_end = serverRssMB();
    out.levels.push(L);
    process.stderr.write(`N=${n}: paced p50 ${L.paced_phase.latency_ms.p50 ?? '-'} ms, ` +
      `${L.paced_phase.server_us_per_put.toFixed(0)} us CPU/PUT; burst ${L.burst_phase.deliveries_per_s.toFixed(0)} del/s, ` +
      `${L.burst_phase.puts_per_s.toFixed(0)} PUT/s, missing ${L.paced_phase.missing + L.burst_phase.missing}\n`);
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  for (const c of clients) c.terminate();
  for (const c of sinks) c.send({ exit: true });
  agent.destroy();
  setTimeout(() => process.exit(0), 100);
})().catch((e) => { console.error('harness error', e); process.exit(2); });
