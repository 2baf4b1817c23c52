#!/usr/bin/env python3
"""Load benchmark: stratix-gateway against nginx and HAProxy as reverse proxies, side by side.

Everything runs on loopback. Three fixed-response nginx "tasks" listen on 127.0.0.2-4:3000
(like three Swarm tasks of one service); each proxy balances over them with pooled upstream
connections. wrk drives every target with identical settings, in rounds whose order rotates,
so that a slow moment of the shared machine hits every target alike; the paired ratio compares
the gateway with the best peer of the run (best median), round by round. Every proxy keeps
idle upstream connections 60 s, so no round starts by refilling a pool. nginx and HAProxy send
the ten security headers the gateway sends by default (--bare-peers: without them).

    benches/load/run.py                       # full run: 3 rounds x 10 s per target
    benches/load/run.py --duration 3 --rounds 1 --targets gateway-1w,nginx-1w
    GATEWAY=target/release/stratix-gateway benches/load/run.py
    benches/load/run.py --baseline /tmp/gw-before --targets gateway-1w,baseline-1w   # A/B two builds
    benches/load/run.py --targets gateway-1w,authgw-1w,nginx-1w,authnginx-1w   # authenticated
                                                    # traffic: every request carries a bearer token
                                                    # ([auth] on); authnginx: nginx forwarding the same
                                                    # token and sending the tasks the same identity
                                                    # headers, verifying nothing (the bytes' own cost)
    benches/load/run.py --think 1-3 --max-steal 1   # the same load below saturation for all: p99 at
                                                    # equal load (p99 wants a calmer host than req/s)

On a shared VM the hypervisor gives other guests some of our CPU time ("steal", /proc/stat):
a measurement with more than --max-steal percent of it is repeated (up to --attempts times),
and the paired ratios use the rounds in which every target of the pair was calm.

Needs: wrk, nginx (nginx-light), haproxy from Debian; the gateway built with
`cargo build --release`. Only loopback addresses are used; every wrk run is bounded by
--duration plus a timeout; every process started here is stopped on exit.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH_PATH = "/api/icalink/v1/attendance/19644/checkin"
TASKS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
TASK_PORT = 3000
CLK_TCK = os.sysconf("SC_CLK_TCK")

NGINX_COMMON = """
worker_processes {workers};
daemon off;
pid {state}/{name}.pid;
error_log {state}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_temp_path {state}/tmp-{name};
    proxy_temp_path {state}/tmp-{name};
    fastcgi_temp_path {state}/tmp-{name};
    uwsgi_temp_path {state}/tmp-{name};
    scgi_temp_path {state}/tmp-{name};
"""

UPSTREAM_NGINX = NGINX_COMMON + """
    server {{
        listen {listen} backlog=4096;
        location = /health {{ return 200 "ok\\n"; }}
        location / {{
            default_type application/json;
            return 200 '{{"ok":true}}';
        }}
    }}
}}
"""

PROXY_NGINX = NGINX_COMMON + """
    upstream icalink {{
        {servers}
        keepalive 256;
        keepalive_requests 10000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen {listen} backlog=4096;
        location /api/icalink/ {{
            proxy_pass http://icalink;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
{identity}
{add_headers}
        }}
    }}
}}
"""

PROXY_HAPROXY = """
global
    nbthread {workers}
    maxconn 8192
defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend fe
    bind {listen}
    option forwardfor
{add_headers}
    use_backend be_icalink if {{ path_beg /api/icalink/ }}
backend be_icalink
    balance roundrobin
    http-reuse always
    option httpchk GET /health
    default-server check inter 5s pool-purge-delay 60s
{servers}
"""

# The gateway's default `[security_headers]` (src/config/mod.rs; tests/load_script.rs keeps the
# two equal). The peers send them too unless --bare-peers: a proxy that writes ten header
# lines fewer per answer is not doing the same job.
SECURITY_HEADERS = [
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains; preload"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Origin-Agent-Cluster", "?1"),
    ("X-DNS-Prefetch-Control", "off"),
    ("X-Download-Options", "noopen"),
    ("X-Permitted-Cross-Domain-Policies", "none"),
]


def peer_headers(kind, bare):
    """The security headers in a peer's own configuration language (nothing when bare)."""
    if bare:
        return ""
    if kind == "nginx":
        return "\n".join(f'            add_header {n} "{v}" always;' for n, v in SECURITY_HEADERS)
    return "\n".join(f'    http-response set-header {n} "{v}"' for n, v in SECURITY_HEADERS)


GATEWAY_TOML = """
[server]
listen = "{listen}"
admin_listen = "{admin}"
workers = {workers}
shutdown_drain = "0s"
shutdown_timeout = "2s"

[log]
level = "warn"
access_log = false   # the peers run with access logs off too; everything else stays on

[upstreams.app-icalink]
endpoints = [{endpoints}]
# The tasks here are nginx (keep-alive 75 s), not Node (5 s, which the 4 s default is for):
# every proxy keeps idle upstream connections 60 s (nginx keepalive_timeout, HAProxy
# pool-purge-delay), so no round starts by refilling its pool after the other targets' turns.
pool_idle_timeout = "60s"

[upstreams.app-icalink.health]
path = "/health"
interval = "5s"

[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
"""

# authgw-Nw: the gateway with [auth] on, every request carrying the same student's bearer
# token (a browser's requests do: the verified token is cached, so this is the warm path).
AUTH_TOML = """
[auth]
secret = "{secret}"
"""
AUTH_SECRET = "load-test-secret-0123456789abcdef"


def bench_claims():
    """The claims of the load test's student, every one the old gateway reads."""
    return {"userId": "u1001", "username": "张三", "userType": "student", "userNumber": "2021001",
            "email": "zhangsan@example.edu", "phone": "13800000000", "collegeName": "计算机学院",
            "majorName": "软件工程", "className": "软件2101", "roles": ["student"],
            "permissions": ["attendance:checkin", "leave:apply"], "exp": 4950068474}


def identity_headers():
    """What the gateway tells a task for bench_claims() (auth::identity; tests/identity.rs pins
    it), for authnginx to send as fixed values: the same bytes, nothing verified."""
    c = bench_claims()
    enc = lambda v: urllib.parse.quote(v, safe="-_.!~*'()")
    js = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return [("X-User-Id", c["userId"]), ("X-User-Type", c["userType"]), ("X-User-Number", c["userNumber"]),
            ("X-User-Email", c["email"]), ("X-User-Phone", c["phone"]), ("X-User-Name", enc(c["username"])),
            ("X-User-College", enc(c["collegeName"])), ("X-User-Major", enc(c["majorName"])),
            ("X-User-Class", enc(c["className"])), ("X-User-Roles", js(c["roles"])),
            ("X-User-Permissions", js(c["permissions"])), ("X-Request-Timestamp", "$time_iso8601")]


def bench_token(secret):
    """An HS256 JWT shaped like the old gateway's (a student, every claim), expiring in 2120."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64(json.dumps(bench_claims(), separators=(",", ":"), ensure_ascii=False).encode())
    signature = b64(hmac.new(secret.encode(), header + b"." + payload, hashlib.sha256).digest())
    return (header + b"." + payload + b"." + signature).decode()


class Services:
    """Processes started here, each in its own session so its whole tree can be stopped."""

    def __init__(self, state):
        self.state = state
        self.procs = {}

    def start(self, name, argv):
        out = open(self.state / f"{name}.out", "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def stop_all(self):
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.procs.clear()


def tree(pid):
    """The PID and its descendants."""
    out = [pid]
    try:
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                                  text=True, check=False).stdout.split()
    except OSError:
        children = []
    for c in children:
        out.extend(tree(int(c)))
    return out


def cpu_ticks(pid):
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def peak_rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def tcp_active_opens():
    lines = [l.split() for l in Path("/proc/net/snmp").read_text().splitlines() if l.startswith("Tcp:")]
    return int(lines[1][lines[0].index("ActiveOpens")])


def steal_and_total():
    """The machine's stolen and total CPU ticks so far (the `cpu` line of /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    return fields[7], sum(fields[:8])


def port_free(host, port):
    import socket
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def wait_ready(url, headers=(), limit=15.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=dict(h.split(": ", 1) for h in headers))
            with urllib.request.urlopen(req, timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def seconds(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


# wrk's --latency stops at p99; its `done` hook sees the whole histogram. A `done` function
# costs nothing per request (wrk calls Lua per request only for request/response/delay).
TAIL_LUA = """
function done(summary, latency, requests)
  io.write(string.format("tail p99.9=%d us\\n", latency:percentile(99.9)))
end
"""

THINK_LUA = """
-- Think time: each connection waits {lo}-{hi} ms (uniformly, whole ms) after an answer before
-- it sends its next request, so every target gets about the same request rate below its
-- saturation point, and p99 compares the proxies at the same load.
function delay()
  return math.random({lo}, {hi})
end
"""


def run_wrk(url, duration, conns, script, headers=()):
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(script)]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 20, check=False).stdout
    res = {"rps": 0.0, "requests": 0, "p50": float("nan"), "p99": float("nan"), "p999": float("nan"),
           "errors": 0, "non2xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            res[key] = seconds(m.group(1))
    m = re.search(r"^tail p99\.9=(\d+) us", out, re.M)
    if m:
        res["p999"] = int(m.group(1)) * 1e-6
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    res["raw"] = out
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--targets", default="direct,gateway-1w,nginx-1w,haproxy-1w,gateway-2w,nginx-2w,haproxy-2w")
    ap.add_argument("--gateway", default=os.environ.get("GATEWAY", str(ROOT / "target/release/stratix-gateway")))
    ap.add_argument("--baseline", default=None,
                    help="another gateway build: targets baseline-1w, baseline-2w run it with the gateway's config, "
                         "so a change is measured against the build before it in the same rounds")
    ap.add_argument("--max-steal", type=float, default=3.0,
                    help="percent of CPU the hypervisor may give other guests during a measurement before it is "
                         "repeated (default 3; 100 keeps every measurement)")
    ap.add_argument("--attempts", type=int, default=3,
                    help="measurements per target and round at most, when steal is above --max-steal (default 3)")
    ap.add_argument("--calm-wait", type=float, default=15.0,
                    help="seconds to wait at most, before each measurement, for a second without steal (default 15)")
    ap.add_argument("--think", default=None, metavar="LO-HI",
                    help="milliseconds each connection waits between an answer and its next request, e.g. 1-3: "
                         "the same load below saturation for every target (default: none, as fast as it answers)")
    ap.add_argument("--bare-peers", action="store_true",
                    help="nginx and HAProxy without the ten security headers the gateway sends by default "
                         "(the comparison of sessions before 11)")
    ap.add_argument("--out", default=None, help="directory for configs, logs and raw wrk output")
    args = ap.parse_args()
    if args.attempts < 1:
        sys.exit(f"--attempts {args.attempts}: at least 1")
    think = args.think and re.fullmatch(r"(\d+)-(\d+)", args.think)
    if args.think and (not think or int(think.group(1)) > int(think.group(2))):
        sys.exit(f"--think {args.think}: expected LO-HI in whole milliseconds, e.g. 1-3")

    for tool in ("wrk", "nginx", "haproxy"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} not found: apt-get install wrk nginx-light haproxy")
    if not Path(args.gateway).exists():
        sys.exit(f"{args.gateway} not found: cargo build --release")
    targets = [t for t in args.targets.split(",") if t]

    ports = {t: 18100 + i for i, t in enumerate(targets)}
    busy = [f"{h}:{TASK_PORT}" for h in TASKS if not port_free(h, TASK_PORT)]
    busy += [f"127.0.0.1:{p}" for p in ports.values() if not port_free("127.0.0.1", p)]
    busy += [f"127.0.0.1:{p + 100}" for p in ports.values() if not port_free("127.0.0.1", p + 100)]
    if busy:
        sys.exit(f"ports in use (nothing is killed here): {', '.join(busy)}")

    state = Path(args.out or tempfile.mkdtemp(prefix="stratix-load-"))
    state.mkdir(parents=True, exist_ok=True)
    args.script = state / "wrk.lua"
    args.script.write_text(TAIL_LUA + (THINK_LUA.format(lo=think.group(1), hi=think.group(2)) if think else ""))
    services = Services(state)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args, targets, ports, state, services)
    finally:
        services.stop_all()


def run(args, targets, ports, state, services):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    for i, host in enumerate(TASKS):
        name = f"task{i + 1}"
        conf = state / f"{name}.conf"
        conf.write_text(UPSTREAM_NGINX.format(state=state, name=name, workers=1, listen=f"{host}:{TASK_PORT}"))
        services.start(name, [nginx, "-c", str(conf), "-e", str(state / f"{name}.error.log")])

    urls, pids = {}, {}
    headers = {t: () for t in targets}
    for t in targets:
        listen = f"127.0.0.1:{ports[t]}"
        urls[t] = f"http://{listen}{BENCH_PATH}"
        if t == "direct":
            urls[t] = f"http://{TASKS[0]}:{TASK_PORT}{BENCH_PATH}"
            pids[t] = services.procs["task1"].pid
            continue
        kind, workers = t.rsplit("-", 1)
        workers = int(workers.rstrip("w"))
        conf = state / f"{t}.conf"
        if kind in ("gateway", "baseline", "authgw"):
            eps = ", ".join(f'"{h}:{TASK_PORT}"' for h in TASKS)
            toml = GATEWAY_TOML.format(listen=listen, admin=f"127.0.0.1:{ports[t] + 100}",
                                       workers=workers, endpoints=eps)
            if kind == "authgw":
                toml += AUTH_TOML.format(secret=AUTH_SECRET)
                headers[t] = (f"Authorization: Bearer {bench_token(AUTH_SECRET)}",)
            conf.write_text(toml)
            binary = args.baseline if kind == "baseline" else args.gateway
            if not binary:
                sys.exit(f"{t} needs --baseline BINARY")
            argv = [binary, "--config", str(conf)]
        elif kind in ("nginx", "authnginx"):
            servers = "\n        ".join(f"server {h}:{TASK_PORT};" for h in TASKS)
            identity = ""
            if kind == "authnginx":
                headers[t] = (f"Authorization: Bearer {bench_token(AUTH_SECRET)}",)
                identity = "\n".join(f"            proxy_set_header {n} '{v}';" for n, v in identity_headers())
            conf.write_text(PROXY_NGINX.format(state=state, name=t, workers=workers, listen=listen, servers=servers,
                                               identity=identity, add_headers=peer_headers("nginx", args.bare_peers)))
            argv = [nginx, "-c", str(conf), "-e", str(state / f"{t}.error.log")]
        elif kind == "haproxy":
            servers = "\n".join(f"    server t{i + 1} {h}:{TASK_PORT}" for i, h in enumerate(TASKS))
            conf.write_text(PROXY_HAPROXY.format(workers=workers, listen=listen, servers=servers,
                                                 add_headers=peer_headers("haproxy", args.bare_peers)))
            argv = [haproxy, "-f", str(conf)]
        else:
            sys.exit(f"unknown target {t}")
        pids[t] = services.start(t, argv).pid

    for t in targets:
        if not wait_ready(urls[t], headers[t]):
            sys.exit(f"{t} did not answer 200 on {urls[t]}; logs in {state}")
    for t in targets:
        run_wrk(urls[t], args.warmup, args.conns, args.script, headers[t])

    task_pids = [services.procs[f"task{i + 1}"].pid for i in range(len(TASKS))]
    tasks_ticks = lambda: sum(cpu_ticks(p) for p in task_pids)
    # wrk is the only child that is waited for during a run: its CPU is the children's usage.
    wrk_cpu = lambda: (lambda u: u.ru_utime + u.ru_stime)(resource.getrusage(resource.RUSAGE_CHILDREN))
    rows = {t: [] for t in targets}
    limit = args.max_steal / 100
    for r in range(args.rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for t in order:
            lost_errors = 0
            for attempt in range(1, args.attempts + 1):
                wait_calm(limit, args.calm_wait)
                res = measure(t, urls[t], pids[t], args, tasks_ticks, wrk_cpu, headers[t])
                res["round"], res["attempt"] = r, attempt
                res["clean"] = res["steal"] <= limit
                line = (f"round {r + 1}/{args.rounds} {t:12s} {res['rps']:9.0f} req/s  p99 {res['p99'] * 1e3:6.2f} ms  "
                        f"p99.9 {res['p999'] * 1e3:6.2f} ms  "
                        f"cpu {res['cpu'] * 100:4.0f}%  errors {res['errors'] + res['non2xx']}  "
                        f"steal {res['steal'] * 100:4.1f}%")
                if res["clean"] or attempt == args.attempts:
                    break
                # A measurement the neighbours took part in is not compared; its errors still count.
                lost_errors += res["errors"] + res["non2xx"]
                print(line + "  (repeated: steal above --max-steal)", flush=True)
            res["errors"] += lost_errors
            res["repeats"] = attempt - 1
            rows[t].append(res)
            (state / f"wrk-{t}-r{r + 1}.txt").write_text(res["raw"])
            print(line + ("" if res["clean"] else "  (kept: no calmer attempt left)"), flush=True)

    rss = {t: peak_rss_kib(pids[t]) for t in targets}
    print_table(targets, rows, rss, args, state)


def wait_calm(limit, most):
    """Wait, at most `most` seconds, for one second in which the hypervisor took at most `limit`."""
    deadline = time.time() + most
    while time.time() < deadline:
        s0 = steal_and_total()
        time.sleep(1)
        s1 = steal_and_total()
        if (s1[0] - s0[0]) / max(1, s1[1] - s0[1]) <= limit:
            return


def measure(t, url, pid, args, tasks_ticks, wrk_cpu, headers=()):
    c0, o0, w0 = cpu_ticks(pid), tcp_active_opens(), time.time()
    k0, g0, s0 = tasks_ticks(), wrk_cpu(), steal_and_total()
    res = run_wrk(url, args.duration, args.conns, args.script, headers)
    c1, o1, w1 = cpu_ticks(pid), tcp_active_opens(), time.time()
    k1, g1, s1 = tasks_ticks(), wrk_cpu(), steal_and_total()
    # On a shared VM the hypervisor runs other guests on our cores: a run with much
    # steal measured the neighbours as much as the target.
    res["steal"] = (s1[0] - s0[0]) / max(1, s1[1] - s0[1])
    res["cpu"] = (c1 - c0) / CLK_TCK / (w1 - w0)
    # The whole machine's CPU per request (proxy, tasks, wrk): unlike req/s it does not
    # count the time the box spent on other tenants, so it moves less with them.
    proxy_s = 0 if t == "direct" else (c1 - c0) / CLK_TCK
    total_s = proxy_s + (k1 - k0) / CLK_TCK + (g1 - g0)
    res["all_us"] = total_s * 1e6 / res["requests"] if res["requests"] else float("nan")
    res["task_us"] = (k1 - k0) / CLK_TCK * 1e6 / res["requests"] if res["requests"] else float("nan")
    res["opens"] = o1 - o0
    return res


def med(xs):
    """The median, NaN for no values (a target without calm rounds)."""
    return statistics.median(xs) if xs else float("nan")


def paired(rows, t, peers, use, key, higher):
    """`t` against the peer with the best median `key` over rounds `use`: the median of the
    per-round ratios, and in how many of those rounds `t` was the better of the two."""
    score = lambda p: med([rows[p][i][key] for i in use])
    best = (max if higher else min)(peers, key=score)
    # A failed wrk run reads as 0 req/s: its ratio is unknown, not a crash of the whole report.
    ratios = [rows[t][i][key] / rows[best][i][key] if rows[best][i][key] else float("nan") for i in use]
    better = sum(1 for r in ratios if (r > 1 if higher else r < 1))
    return f"{med(ratios):.2f}x {best} ({'ahead' if higher else 'lower'} in {better}/{len(ratios)})"


def print_table(targets, rows, rss, args, state):
    lines = []
    head = (f"{'target':12s} {'req/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s} {'p99.9':>7s} {'errors':>6s} {'cpu':>5s} "
            f"{'req/s/core':>10s} {'all us/req':>10s} {'task us':>7s} {'connects':>8s} {'rss MiB':>7s} {'steal':>5s}  vs best peer")
    lines += [head, "-" * len(head)]
    for t in targets:
        rs = rows[t]
        rps, cpu = med([r["rps"] for r in rs]), med([r["cpu"] for r in rs])
        per_core = rps / cpu if cpu > 0 else float("nan")
        ratio = ""
        if t.startswith(("gateway-", "authgw-")):
            w = t.split("-")[1]
            peers = [p for p in targets if p.endswith("-" + w) and p.split("-")[0] in ("nginx", "haproxy")]
            # Authenticated traffic is compared with the peer carrying the same bytes, if it ran.
            if t.startswith("authgw-") and f"authnginx-{w}" in targets:
                peers = [f"authnginx-{w}"]
            if peers:
                # Paired, over the rounds in which none of them shared the machine with busy
                # neighbours (all rounds if there is none): the best peer is the one with the best
                # median over those rounds, and the gateway is compared with it round by round.
                # Why not the better of the two peers in each round: that picks whichever was luckier
                # in the round, so even a proxy identical to both would rate below 1.0.
                calm = [i for i in range(len(rs)) if all(rows[x][i]["clean"] for x in [t] + peers)]
                use = calm or range(len(rs))
                parts = [paired(rows, t, peers, use, key, higher)
                         for key, higher in (("rps", True), ("p99", False), ("p999", False))]
                ratio = (f"{parts[0]}; p99 {parts[1]}; p99.9 {parts[2]} "
                         f"({len(calm)}/{len(rs)} rounds calm)")
            plain = f"gateway-{w}"
            if t.startswith("authgw-") and plain in targets:
                pr = [rows[t][i]["rps"] / rows[plain][i]["rps"] for i in range(len(rs))]
                ratio += f"  {med(pr):.2f} x unauthenticated"
            base = f"baseline-{w}"
            if base in targets:
                pr = [rows[t][i]["rps"] / rows[base][i]["rps"] for i in range(len(rs))]
                ratio += f"  {med(pr):.2f} x baseline"
        if t.startswith("authnginx-") and f"nginx-{t.split('-')[1]}" in targets:
            plain = f"nginx-{t.split('-')[1]}"
            pr = [rows[t][i]["rps"] / rows[plain][i]["rps"] for i in range(len(rs))]
            ratio = f"{med(pr):.2f} x {plain}: what carrying the token and identity costs the pipeline"
        lines.append(f"{t:12s} {rps:9.0f} {med([r['p50'] for r in rs]) * 1e3:7.2f} {med([r['p99'] for r in rs]) * 1e3:7.2f} "
                     f"{med([r['p999'] for r in rs]) * 1e3:7.2f} "
                     f"{sum(r['errors'] + r['non2xx'] for r in rs):6d} {cpu * 100:4.0f}% {per_core:10.0f} "
                     f"{med([r['all_us'] for r in rs]):10.1f} {med([r['task_us'] for r in rs]):7.1f} "
                     f"{med([r['opens'] for r in rs]):8.0f} {rss[t] / 1024:7.1f} "
                     f"{max(r['steal'] for r in rs) * 100:4.0f}%  {ratio}")
    lines += ["",
              f"wrk -t1 -c{args.conns} -d{args.duration}s --latency, {args.rounds} round(s), order rotated; medians."
              + (f" Think time {args.think} ms per connection between requests (--think)." if args.think else ""),
              "cpu = CPU of the target's process tree (100% = one core; direct: the task itself).",
              "req/s/core = req/s / cpu. all us/req = CPU of proxy + tasks + wrk per request (the whole pipeline);",
              "task us = the tasks' share of it.",
              "connects = TCP connects on the machine during one run "
              f"(wrk's {args.conns} + the proxy's new upstream connections).",
              "rss = peak RSS (VmHWM) of the target's processes after all runs.",
              "p99.9 in ms, from wrk's histogram (its done() hook).",
              "vs best peer: the gateway's req/s, p99 and p99.9 over the best peer's in the same round (the peer "
              "with the best median of each), median over the rounds, and in how many rounds the gateway was "
              "the better of the two.",
              "steal = the most CPU time, over the target's rounds, that the hypervisor gave to other guests "
              "(/proc/stat); above a few percent a round measured the neighbours too.",
              f"A measurement with steal above {args.max_steal:g}% was repeated, up to {args.attempts} times "
              f"({sum(r['repeats'] for rs in rows.values() for r in rs)} repeats in this run); errors of repeated "
              "ones are counted. The ratio is over calm rounds (all targets of the pair at most "
              f"{args.max_steal:g}%) when there are any.",
              f"configs, logs, raw wrk output: {state}"]
    text = "\n".join(lines)
    print("\n" + text)
    (state / "table.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
