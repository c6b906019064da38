#!/usr/bin/env python3
"""
Fan-out benchmark: PUT-to-delivery latency, StreamItem deliveries per second and server
CPU per delivery for 1, 100 and 1,000 WebSocket subscribers on one document.

    python bench/fanout.py                 # about 1-2 minutes, prints a markdown table
    python bench/fanout.py --with-anchors  # also runs the peer servers of
                                           # ../shared/fanout-anchors (about 1 more minute)

It starts ``python -m rustybeam`` on a free 127.0.0.1 port with a temporary document
root holding ``doc.html``, and runs ``bench/node/fanout_harness.js`` (Node + ws; the
harness of ``shared/fanout-anchors`` adapted to an HTTP publisher) against it. The
server runs with its default options except ``--max-connections-per-address 1100``
(the default, 100, would refuse the 1,000 subscribers that all come from 127.0.0.1);
so writes are fsync'd, and permessage-deflate is accepted but the subscribers do not
offer it (as in the anchors).

For each subscriber count N (0, then 1, 100, 1000 on the same server, connections are
added between levels) the harness:
  * warms up with 20 PUTs, one at a time (this also gives the unloaded fan-out time:
    PUT sent to the last subscriber's receipt);
  * paced: PUTs at a fixed interval (20 ms, or 2x the warm-up's p90 fan-out time if
    longer, so that PUTs do not queue behind one another) -> latency p50/p99 of every
    (PUT, subscriber) pair, from handing the PUT to Node's http client to the
    subscriber's receipt, on one monotonic clock;
  * burst: bursts of 50 PUTs sent back to back (4 in flight on keep-alive HTTP
    connections), the next burst once everything is delivered (closed loop) ->
    deliveries per second;
  * server CPU: utime+stime of /proc/PID/stat (all threads, so the fsync worker too),
    cross-checked with the threads' schedstat, before and 200 ms after each phase.

The whole sequence is then run again on a fresh server with ``--no-fsync`` (disable
with ``--no-no-fsync-run``): fsync latency on a shared disk is the noisiest part of a
PUT, and the second run shows the delivery path without it.

The publisher is an HTTP PUT with ``Range: selector=#x``: request parsing, a durable
(fsync'd) write in a worker thread, a document parse and selector evaluation, an HTTP
response -- not one WebSocket message as in the anchors. The N=0 level measures that
cost alone, so the table also gives the marginal cost of one delivery,
(CPU per PUT with N subscribers - CPU per PUT with none) / N.

Options: ``--json FILE`` saves the raw results; ``--server-arg=OPTION`` (repeatable)
passes options to the server; ``--profile FILE`` runs the server under cProfile
(slower; FILE and FILE.no-fsync; read with ``python -m pstats FILE``);
``bench/delivery_inprocess.py`` times the delivery path in-process, without sockets. Everything talks to 127.0.0.1 only, and
the run stops by itself (the harness is killed after --timeout seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NODE_DIR = os.path.join(HERE, "node")
HARNESS = os.path.join(NODE_DIR, "fanout_harness.js")
ANCHORS = os.path.normpath(os.path.join(REPO, "..", "shared", "fanout-anchors"))
ANCHOR_ROWS = ("autobahn-prepared", "autobahn-naive", "node-ws", "py-websockets")
CLK_TCK = os.sysconf("SC_CLK_TCK")

DOCUMENT = """<!DOCTYPE html>
<html>
<head><title>fan-out benchmark</title></head>
<body>
<h1>fan-out benchmark</h1>
<div id="x">not yet changed</div>
</body>
</html>
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_node_modules() -> None:
    """Install the harness's one dependency (C{ws}) from the npm registry, pinned by
    bench/node/package-lock.json, on first run; nothing third-party is kept in the repo."""
    if os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ws")):
        return
    how = "cd bench/node && npm ci"
    if shutil.which("node") is None or shutil.which("npm") is None:
        sys.exit("the fan-out harness needs Node.js 18+ and npm, which were not found.\n"
                 f"Install them (e.g. `apt-get install nodejs npm`), then run `{how}` "
                 "(or just rerun this benchmark, which runs it for you).")
    cmd = ["npm", "ci", "--no-audit", "--no-fund"]
    log(f"installing the harness's dependency 'ws' from package-lock.json: {' '.join(cmd)} (in bench/node)")
    done = subprocess.run(cmd, cwd=NODE_DIR, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        sys.exit(f"`{how}` failed (exit {done.returncode}); the harness needs the 'ws' package "
                 "from the npm registry. Run it by hand to see why.")


def sinks_for(levels: str) -> int:
    """Extra subscriber processes: one per 2,500 subscribers beyond the first 2,500."""
    most = max(int(n) for n in levels.split(","))
    return max(0, -(-most // 2500) - 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/doc.html", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    return (user + nice + system + irq + softirq) / CLK_TCK


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_rustybeam(args: argparse.Namespace, extra: list[str]) -> dict:
    root = tempfile.mkdtemp(prefix="rustybeam-bench-")
    with open(os.path.join(root, "doc.html"), "w") as f:
        f.write(DOCUMENT)
    port = free_port()
    most = max(int(n) for n in args.levels.split(",")) + 100
    options = ["--root", root, "--port", f"tcp:{port}:interface=127.0.0.1",
               "--max-connections-per-address", str(max(1100, most)), *extra]
    if most > 10_000:
        options += ["--max-connections", str(most)]
    python = [sys.executable]
    if args.profile:
        suffix = ".no-fsync" if "--no-fsync" in extra and "--no-fsync" not in args.server_arg else ""
        python += ["-m", "cProfile", "-o", os.path.abspath(args.profile) + suffix]
    cmd = python + ["-m", "rustybeam", *options]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server_log = tempfile.NamedTemporaryFile("w+", prefix="rustybeam-bench-", suffix=".log", delete=False)
    server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=server_log, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, server)
        time.sleep(0.3)
        harness = ["node", HARNESS, "--port", str(port), "--pid", str(server.pid),
                   "--levels", args.levels, "--paced", str(args.paced), "--interval", str(args.interval),
                   "--burst-total", str(args.burst_total), "--burst-size", str(args.burst_size),
                   "--burst-deliveries", str(args.burst_deliveries), "--concurrency", str(args.concurrency),
                   "--clk-tck", str(CLK_TCK), "--deflate", "1" if args.deflate else "0",
                   "--sinks", str(args.sinks if args.sinks is not None else sinks_for(args.levels))]
        log(f"server: {' '.join(['python', '-m', 'rustybeam', *options])} (pid {server.pid})")
        la0, busy0, srv0 = loadavg(), machine_busy_s(), proc_cpu_s(server.pid)
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        h = subprocess.run(harness, cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=None, text=True,
                           timeout=args.timeout)
        wall = time.monotonic() - t0
        if h.returncode != 0:
            raise RuntimeError(f"the harness failed ({h.returncode})")
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy, srv = machine_busy_s() - busy0, proc_cpu_s(server.pid) - srv0
        node = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
        result = json.loads(h.stdout.strip().splitlines()[-1])
        result["run"] = {
            "server_command": ["python", "-m", "rustybeam", *options],
            "wall_s": wall, "loadavg_before": la0, "loadavg_after": loadavg(),
            "cores": os.cpu_count(),
            # CPU used on the machine during the run by processes other than ours
            "other_cpu_cores": max(0.0, busy - srv - node) / wall,
            "server_cpu_s": srv, "harness_cpu_s": node, "deflate": args.deflate,
        }
        return result
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server_log.close()
        if args.keep_log:
            log(f"server log: {server_log.name}")
        else:
            os.unlink(server_log.name)
        shutil.rmtree(root, ignore_errors=True)


def run_anchors(args: argparse.Namespace) -> list[dict]:
    """One round of the shared anchors, run from a scratch copy (shared/ is not touched)."""
    work = tempfile.mkdtemp(prefix="fanout-anchors-")
    try:
        for item in ("run_all.py", "servers"):
            src = os.path.join(ANCHORS, item)
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(work, item))
        os.makedirs(os.path.join(work, "node"))
        for item in ("harness.js", "node_ws_server.js"):
            shutil.copy(os.path.join(ANCHORS, "node", item), os.path.join(work, "node", item))
        os.symlink(os.path.join(NODE_DIR, "node_modules"), os.path.join(work, "node", "node_modules"))
        os.makedirs(os.path.join(work, "venv", "bin"))
        python = os.path.join(work, "venv", "bin", "python")  # run_all.py's interpreter
        with open(python, "w") as f:  # exec keeps the PID that run_all.py measures
            f.write(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
        os.chmod(python, 0o755)
        os.makedirs(os.path.join(work, "results"))
        out = os.path.join(work, "results", "raw.jsonl")
        cmd = [sys.executable, os.path.join(work, "run_all.py"), "--rounds", "1", "--out", out,
               "--servers", ",".join(ANCHOR_ROWS)]
        log("anchors: " + " ".join(cmd[1:]))
        subprocess.run(cmd, check=True, timeout=300, stdout=sys.stderr)
        with open(out) as f:
            return [json.loads(line) for line in f if line.strip()]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_floor(args: argparse.Namespace, n: int) -> dict | None:
    """bench/sendfloor.py at C{n} sockets: the cost of one bare send() per delivery."""
    cmd = [sys.executable, os.path.join(HERE, "sendfloor.py"), "--n", str(n)]
    log("send() floor: " + " ".join(cmd[1:]))
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=120, check=True)
    except (subprocess.SubprocessError, OSError) as e:
        log(f"the send() floor did not run: {e}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def quoted_anchors() -> tuple[dict[str, dict[str, str]], str]:
    """The anchors' summary rows (median [min-max] of 5 runs), by server name."""
    path = os.path.join(ANCHORS, "results", "summary_main.md")
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    with open(path) as f:
        for line in f:
            if not line.startswith("|"):
                header = None
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0] == "server":
                header = cells
            elif header and not set(cells[0]) <= set("-: "):
                rows.setdefault(cells[0], {}).update(zip(header, cells))
    return rows, path


def median_of(cell: str) -> str:
    """'14.05 [13.25–14.85]' -> '14.05'."""
    return cell.split("[")[0].strip() if cell else "?"


def fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "—"
    return f"{v:.{digits}f}"


def rate(v: float) -> str:
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def label(result: dict) -> str:
    extra = result["run"]["server_command"][9:]
    name = "rustybeam" + (" " + " ".join(extra) if extra else "")
    return name + (" (deflate clients)" if result["run"].get("deflate") else "")


def per_connection_kb(result: dict, level: dict, key: str) -> float | None:
    start = result.get("server_rss_mb_start")
    if not level["n"] or start is None or level.get(key) is None:
        return None
    return (level[key] - start) * 1024 / level["n"]


def report(results: list[dict], anchors_run: list[dict] | None, floor: dict | None = None) -> str:
    out: list[str] = []
    out.append("| server | subscribers | paced CPU µs/delivery | paced marginal CPU µs/delivery "
               "| burst CPU µs/delivery | burst marginal CPU µs/delivery | paced lat p50 ms "
               "| paced lat p99 ms | burst deliveries/s | RSS MB | RSS KB/conn idle / after broadcasts |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        levels = {L["n"]: L for L in result["levels"]}
        base = levels.get(0)
        for n, L in sorted(levels.items()):
            if n == 0:
                continue
            p, b = L["paced_phase"], L["burst_phase"]
            mp = mb = None
            if base is not None and n >= 100:  # for N=1 the PUT's own ±0.3 ms noise swamps it
                mp = (p["server_us_per_put"] - base["paced_phase"]["server_us_per_put"]) / n
                mb = (b["server_us_per_put"] - base["burst_phase"]["server_us_per_put"]) / n
            out.append(
                f"| {label(result)} (HTTP PUT publisher) | {n:,} | {fmt(p['server_us_per_delivery'])} | {fmt(mp)} "
                f"| {fmt(b['server_us_per_delivery'])} | {fmt(mb)} | {fmt(p['latency_ms']['p50'])} "
                f"| {fmt(p['latency_ms']['p99'])} | {rate(b['deliveries_per_s'])} "
                f"| {L['server_rss_mb_connected']:.0f} "
                f"| {fmt(per_connection_kb(result, L, 'server_rss_mb_connected'))} / "
                f"{fmt(per_connection_kb(result, L, 'server_rss_mb_end'))} |")
    for r in anchors_run or ():
        p, b = r["paced_phase"], r["burst_phase"]
        out.append(
            f"| {r['server']} (same run, WS publisher) | {r['n']:,} | {fmt(p['server_us_per_delivery'], 2)} | — "
            f"| {fmt(b['server_us_per_delivery'], 2)} | — | {fmt(p['latency_ms']['p50'])} "
            f"| {fmt(p['latency_ms']['p99'])} | {rate(b['deliveries_per_s'])} "
            f"| {r.get('server_rss_mb_connected') or 0:.0f} | — |")
    if floor:
        out.append(
            f"| send() floor (same run, bench/sendfloor.py) | {floor['n']:,} | {fmt(floor['paced_us_per_delivery'], 2)} "
            f"| — | {fmt(floor['burst_us_per_delivery'], 2)} | — | — | — | — | — | — |")
    rows, path = quoted_anchors()
    for name in ANCHOR_ROWS:
        a = rows.get(name)
        if not a:
            continue
        out.append(
            f"| {name} (anchors summary, WS publisher) | 1,000 | {median_of(a.get('paced CPU µs/delivery', ''))} | — "
            f"| {median_of(a.get('burst CPU µs/delivery', ''))} | — | {median_of(a.get('paced lat p50 ms', ''))} "
            f"| {median_of(a.get('paced lat p99 ms', ''))} | {median_of(a.get('burst deliveries/s', ''))} "
            f"| {median_of(a.get('RSS MB (1000 conns)', ''))} | — |")
    out.append("")
    out.append("rustybeam's publisher (HTTP PUT) cost and timing:")
    out.append("")
    out.append("| server | subscribers | server CPU µs/PUT paced | server CPU µs/PUT burst "
               "| PUT response p50 / p99 ms (paced) | unloaded fan-out p50 ms (PUT → last subscriber) "
               "| paced interval ms × PUTs | burst PUTs/s | server / harness busy in burst (cores) "
               "| StreamItem bytes | RSS MB | missing / out of order |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        for L in result["levels"]:
            n, p, b = L["n"], L["paced_phase"], L["burst_phase"]
            pr = p["put_response_ms"]
            out.append(
                f"| {label(result)} | {n:,} | {p['server_us_per_put']:.0f} | {b['server_us_per_put']:.0f} "
                f"| {fmt(pr['p50'])} / {fmt(pr['p99'])} | {fmt(L['warmup_fanout_ms']['p50'])} "
                f"| {L['paced_interval_ms']} × {L['paced_puts']} | {b['puts_per_s']:.0f} "
                f"| {b['server_util']:.2f} / {b['harness_util']:.2f} "
                f"| {L['frame_bytes'] or '—'} | {L['server_rss_mb_connected']:.0f} "
                f"| {p['missing'] + b['missing']} / {L['out_of_order']} |")
    out.append("")
    out.append(bounds(results, anchors_run))
    out.append("")
    for result in results:
        run = result["run"]
        shown = [o if not o.startswith("/") else "TMPDIR" for o in run["server_command"]]
        out.append(f"- `{' '.join(shown)}`: {run['wall_s']:.0f} s, load average {run['loadavg_before']:.1f} "
                   f"before / {run['loadavg_after']:.1f} after, other processes used "
                   f"{run['other_cpu_cores']:.2f} of {run['cores']} cores meanwhile.")
    if anchors_run:
        out.append(f"- anchors (same run): load average before each: "
                   + ", ".join(f"{r['server']} {r['loadavg_before']:.1f}" for r in anchors_run) + ".")
    out.append(f"- anchors summary rows: medians of 5 runs at N=1000 quoted from "
               f"{os.path.relpath(path, REPO)}.")
    return "\n".join(out)


def ceiling(server_us: float, harness_us: float) -> float:
    """The most deliveries a second the machine's cores allow when each costs the server
    C{server_us} and the harness C{harness_us} of CPU: cores / (s + h)."""
    return (os.cpu_count() or 1) * 1e6 / (server_us + harness_us)


def bounds(results: list[dict], anchors_run: list[dict] | None) -> str:
    """
    What the machine allows, from the same run's CPU per delivery: the server's (C{s})
    and the harness's per receipt (C{h}, its sinks included). One PUT's fan-out to N
    watchers takes at least N x max(s, (s + h) / cores, h / harness processes): the
    server sends from one thread, the harness's processes each take in their share,
    and the two share the machine's cores. Likewise a burst cannot pass
    cores / (s + h) deliveries a second.
    """
    cores = os.cpu_count() or 1
    out = ["What the machine's cores allow (s: server CPU µs/delivery, h: harness CPU µs/receipt, "
           f"{cores} cores; least fan-out = N × max(s, (s + h) / cores, h / harness processes), "
           "burst ceiling = cores / (s + h)):", "",
           "| server | subscribers | paced s / h µs | least fan-out of one PUT ms | paced p50 / p99 ms "
           "| burst s / h µs | burst ceiling deliveries/s | burst deliveries/s (share of ceiling) |",
           "|---|---|---|---|---|---|---|---|"]

    def row(name: str, n: int, p: dict, b: dict, processes: int) -> None:
        s, h = p["server_us_per_delivery"], p.get("harness_us_per_delivery")
        sb, hb = b["server_us_per_delivery"], b.get("harness_us_per_delivery")
        least = most = None
        if s is not None and h is not None:
            least = n * max(s, (s + h) / cores, h / processes) / 1e3
        if sb is not None and hb is not None:
            most = ceiling(sb, hb)
        rate_ = b["deliveries_per_s"]
        share = f" ({rate_ / most:.0%})" if most and rate_ else ""
        out.append(f"| {name} | {n:,} | {fmt(s)} / {fmt(h)} | {fmt(least)} "
                   f"| {fmt(p['latency_ms']['p50'])} / {fmt(p['latency_ms']['p99'])} "
                   f"| {fmt(sb)} / {fmt(hb)} | {rate(most) if most else '—'} | {rate(rate_)}{share} |")

    for result in results:
        for L in result["levels"]:
            if L["n"] >= 100:
                row(label(result), L["n"], L["paced_phase"], L["burst_phase"], L.get("processes", 1))
    for r in anchors_run or ():
        row(f"{r['server']} (same run)", r["n"], r["paced_phase"], r["burst_phase"], 1)
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="0,1,100,1000", help="subscriber counts, ascending (0 = publisher cost)")
    ap.add_argument("--paced", type=int, default=200, help="PUTs in the paced phase (at most)")
    ap.add_argument("--interval", type=int, default=20, help="paced interval in ms (at least)")
    ap.add_argument("--burst-total", type=int, default=500, help="PUTs in the burst phase (at most)")
    ap.add_argument("--burst-size", type=int, default=50)
    ap.add_argument("--burst-deliveries", type=int, default=200_000, help="cap on deliveries per burst phase")
    ap.add_argument("--concurrency", type=int, default=4, help="PUTs in flight during a burst")
    ap.add_argument("--server-arg", action="append", default=[], help="extra server option (repeatable)")
    ap.add_argument("--no-fsync-run", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the server with --no-fsync, to separate disk latency from delivery")
    ap.add_argument("--profile", help="run the server under cProfile and write the stats here")
    ap.add_argument("--with-anchors", action="store_true", help="also run one round of the shared anchors")
    ap.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure the send() floor (bench/sendfloor.py) at the largest level")
    ap.add_argument("--sinks", type=int, default=None,
                    help="extra Node processes holding subscribers (default: one per 2,500 beyond 2,500)")
    ap.add_argument("--deflate", action="store_true",
                    help="subscribers offer permessage-deflate, as browsers do")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--timeout", type=float, default=240, help="seconds before the harness is killed")
    ap.add_argument("--keep-log", action="store_true", help="keep the server's log")
    args = ap.parse_args()
    ensure_node_modules()
    results = [run_rustybeam(args, args.server_arg)]
    if args.no_fsync_run and "--no-fsync" not in args.server_arg:
        results.append(run_rustybeam(args, args.server_arg + ["--no-fsync"]))
    anchors_run = None
    if args.with_anchors:
        try:
            anchors_run = run_anchors(args)
        except (subprocess.SubprocessError, OSError) as e:
            log(f"the anchors did not run: {e}")
    floor = run_floor(args, max(int(n) for n in args.levels.split(","))) if args.floor else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rustybeam": results, "anchors": anchors_run, "floor": floor}, f, indent=1)
    print(report(results, anchors_run, floor))


if __name__ == "__main__":
    main()
