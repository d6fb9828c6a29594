"""Preview gateway benchmark: direct vs Debian's nginx vs our gateway, in one run.

Every target serves the same loopback upstreams (nginx serving static files, and a
`websockets` echo server). Servers are pinned to core 0, load generators to core 1.
The gateway checks a real grant on every request (the proxy-token header), so each
request pays for routing, token check, revocation check, upstream resolution and
accounting. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from tests.live import LiveServer, free_port, start_live_server  # noqa: E402

SMALL_BODY = b"Hello, world!"  # 13 bytes
BIG_BODY = os.urandom(1024 * 1024)
SERVER_CORE = "0"
LOAD_CORE = "1"
PROXY_TOKEN_HEADER = "x-nullspace-preview-proxy-token"


# --- processes ---------------------------------------------------------------------


@dataclass
class Procs:
    """Every process this run started, so each one is stopped by its own pid at the end."""

    started: list[subprocess.Popen] = field(default_factory=list)

    def start(
        self, args: list[str], *, core: str | None = SERVER_CORE, log: Path, **kwargs
    ) -> subprocess.Popen:
        prefix = ["taskset", "-c", core] if core is not None and shutil.which("taskset") else []
        out = open(log, "wb")
        proc = subprocess.Popen(prefix + args, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.started):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# --- upstreams and nginx -----------------------------------------------------------

NGINX_MAIN = """
worker_processes 1;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fastcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
    keepalive_requests 1000000;
    {body}
}}
"""

NGINX_STATIC = """
    server {{
        listen 127.0.0.1:{port};
        root {www};
        default_type application/octet-stream;
    }}
"""

# What a user would write: keep-alive upstream pool, WebSocket upgrade, X-Forwarded-*.
NGINX_PROXY = """
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream http_up {{ server {http_upstream}; keepalive 64; }}
    upstream ws_up {{ server {ws_upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        location /ws {{
            proxy_pass http://ws_up;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
        }}
        location / {{
            proxy_pass http://http_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
"""


def start_nginx(procs: Procs, tmp: Path, name: str, body: str, port: int) -> None:
    conf = tmp / f"{name}.conf"
    conf.write_text(NGINX_MAIN.format(tmp=tmp, name=name, body=body))
    procs.start(
        ["nginx", "-c", str(conf), "-p", str(tmp), "-e", str(tmp / f"{name}.error.log")],
        log=tmp / f"{name}.log",
    )
    wait_port(port)


ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, sys.argv[1], int(sys.argv[2]), compression=None, max_size=None):
        await asyncio.Future()

asyncio.run(main())
"""


# --- load generators ---------------------------------------------------------------


@dataclass
class HttpResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    non2xx: int


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    url: str, *, connections: int, seconds: int, headers: dict[str, str], warm_up: bool = False
) -> HttpResult | None:
    """wrk's figures; None for a warm-up (a cold server may answer too few for percentiles)."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, *args, url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    if warm_up:
        return None
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if len(lat) != 2:
        raise RuntimeError(f"wrk {url}: no latency figures in\n{out}")

    def parse(value: str) -> float:
        match = re.match(r"([\d.]+)(us|ms|s)", value)
        return _ms(match[1], match[2])

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return HttpResult(
        rps=rps,
        p50_ms=parse(lat["50"]),
        p99_ms=parse(lat["99"]),
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        non2xx=int(non2xx[1]) if non2xx else 0,
    )


@dataclass
class WsResult:
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


# A lean closed-loop WebSocket load generator (uvloop, raw protocol, replies parsed by
# length), so the load core is not the bottleneck: an aiohttp client topped out near
# nginx's rate and flattened every difference. Each connection sends a 32-byte masked text
# frame, waits for the 34-byte echo (2-byte header, unmasked), and sends the next one.
WS_CLIENT = """
import asyncio, base64, json, os, sys, time
import uvloop

PAYLOAD = b"x" * 32
REPLY = 2 + len(PAYLOAD)

class Echoer(asyncio.Protocol):
    def __init__(self, state, rtts):
        self.state, self.rtts = state, rtts
        self.opened = asyncio.get_running_loop().create_future()
        self.head = b""
        self.pending = 0
        self.sent_at = 0.0
        mask = os.urandom(4)
        self.frame = bytes([0x81, 0x80 | len(PAYLOAD)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(PAYLOAD))

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if not self.opened.done():
            self.head += data
            if b"\\r\\n\\r\\n" in self.head:
                ok = self.head.split(b" ", 2)[1] == b"101"
                self.opened.set_result(ok)
            return
        self.pending += len(data)
        while self.pending >= REPLY:
            self.pending -= REPLY
            now = time.perf_counter()
            self.rtts.append(now - self.sent_at)
            self.send()

    def send(self):
        state = self.state
        if state["go"] and time.monotonic() < state["deadline"] and len(self.rtts) < state["limit"]:
            self.sent_at = time.perf_counter()
            self.transport.write(self.frame)
        else:
            state["idle"] += 1
            if state["idle"] == state["conns"]:
                state["done"].set_result(None)

    def connection_lost(self, exc):
        if not self.opened.done():
            self.opened.set_result(False)

async def main():
    url, headers, conns, seconds, limit = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    loop = asyncio.get_running_loop()
    authority, _, path = url.split("://", 1)[1].partition("/")
    host, _, port = authority.rpartition(":")
    headers = {"Host": authority, **headers}
    rtts, errors = [], 0
    state = {"go": False, "deadline": 0.0, "limit": limit, "idle": 0, "conns": conns, "done": loop.create_future()}
    echoers = []
    for _ in range(conns):
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET /{path} HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        _, echoer = await loop.create_connection(lambda: Echoer(state, rtts), host, int(port))
        echoer.transport.write(("\\r\\n".join(lines) + "\\r\\n\\r\\n").encode())
        echoers.append(echoer)
    opened = await asyncio.wait_for(asyncio.gather(*(e.opened for e in echoers)), 30)
    errors = opened.count(False)
    live = [e for e, ok in zip(echoers, opened) if ok]
    state["conns"] = len(live)
    started = time.monotonic()
    state["go"], state["deadline"] = True, started + seconds
    for echoer in live:
        echoer.send()
    if live:
        await asyncio.wait_for(state["done"], seconds + 30)
    elapsed = time.monotonic() - started
    for echoer in echoers:
        echoer.transport.close()
    rtts.sort()
    pick = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1000 if rtts else 0.0
    print(json.dumps({"count": len(rtts), "elapsed": elapsed, "p50": pick(0.5), "p99": pick(0.99), "errors": errors}))

uvloop.run(main())
"""


def run_ws(
    url: str, *, connections: int, seconds: float, headers: dict[str, str], limit: int = 400_000
) -> WsResult:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CORE,
            str(VENV_BIN / "python"),
            "-c",
            WS_CLIENT,
            url,
            json.dumps(headers),
            str(connections),
            str(seconds),
            str(limit),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"ws client failed: {out.stderr[-2000:]}")
    data = json.loads(out.stdout)
    return WsResult(
        msgs_per_s=data["count"] / data["elapsed"] if data["elapsed"] else 0.0,
        p50_ms=data["p50"],
        p99_ms=data["p99"],
        errors=data["errors"],
    )


# --- the run -----------------------------------------------------------------------


@dataclass
class Target:
    name: str
    http_base: str  # where wrk connects, e.g. http://127.0.0.1:8000
    ws_url: str
    http_headers: dict[str, str] = field(default_factory=dict)
    ws_headers: dict[str, str] = field(default_factory=dict)


def pin(pid: int, core: str = SERVER_CORE) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", core, str(pid)], check=True, capture_output=True)


class Api:
    def __init__(self, live: LiveServer) -> None:
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{live.port}/v1",
            headers={"Authorization": f"Bearer {live.api_key}"},
            timeout=60,
        )

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = self.client.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def sh(self, sandbox_id: str, command: str, *, background: bool = False) -> dict:
        return self.call(
            "POST",
            f"/sandboxes/{sandbox_id}/exec",
            {"command": command, "shell": True, "background": background, "timeout_secs": 60},
        )


UPSTREAM_IN_SANDBOX = """
user root;
worker_processes 1;
daemon off;
pid /workspace/up.pid;
error_log /workspace/up.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path /workspace/tmp-body;
    proxy_temp_path /workspace/tmp-proxy;
    fastcgi_temp_path /workspace/tmp-fastcgi;
    uwsgi_temp_path /workspace/tmp-uwsgi;
    scgi_temp_path /workspace/tmp-scgi;
    keepalive_requests 1000000;
    server { listen 0.0.0.0:8080; root /workspace/www; default_type application/octet-stream; }
}
"""


def start_sandbox_upstreams(
    api: Api, live: LiveServer
) -> tuple[str, tuple[str, int], tuple[str, int]]:
    """A sandbox running nginx (static 13 B and 1 MiB files) on 8080 and a WebSocket echo on 8081."""
    sandbox_id = api.call("POST", "/sandboxes", {"template": "base", "timeout_ms": 3_600_000})["id"]
    api.sh(
        sandbox_id,
        "mkdir -p www && printf 'Hello, world!' > www/small && head -c 1048576 /dev/urandom > www/big"
        f" && cat > up.conf <<'CONF'\n{UPSTREAM_IN_SANDBOX}\nCONF\n"
        f"cat > echo.py <<'PY'\n{ECHO_SERVER}\nPY\n",
    )
    api.sh(
        sandbox_id,
        f"exec taskset -c {SERVER_CORE} nginx -c /workspace/up.conf -p /workspace",
        background=True,
    )
    api.sh(
        sandbox_id,
        f"exec taskset -c {SERVER_CORE} {VENV_BIN / 'python'} echo.py 0.0.0.0 8081",
        background=True,
    )
    for port in (8080, 8081):
        ready = api.call(
            "POST",
            f"/sandboxes/{sandbox_id}/ports/{port}/readiness",
            {"kind": "tcp", "timeout_secs": 20, "interval_ms": 100},
        )
        if not ready["ready"]:
            raise RuntimeError(f"sandbox upstream on {port} not ready: {ready}")
    where = (
        live.manage(
            "shell",
            "-c",
            "from console.runtime import get_driver; d = get_driver(); "
            f"print(*d.upstream('{sandbox_id}', 8080), *d.upstream('{sandbox_id}', 8081))",
        )
        .splitlines()[-1]
        .split()
    )
    return sandbox_id, (where[0], int(where[1])), (where[2], int(where[3]))


def gateway_target(name: str, port: int, api: Api, sandbox_id: str) -> Target:
    http = api.call(
        "POST",
        f"/sandboxes/{sandbox_id}/ports/8080/preview-proxy-target",
        {"transports": ["http"], "expires_in_seconds": 7200},
    )
    ws = api.call(
        "POST",
        f"/sandboxes/{sandbox_id}/ports/8081/preview-proxy-target",
        {"transports": ["websocket"], "expires_in_seconds": 7200},
    )
    host_http = http["http_url"].split("/")[2]
    host_ws = ws["websocket_url"].split("/")[2]
    return Target(
        name=name,
        http_base=f"http://127.0.0.1:{port}",
        ws_url=f"ws://127.0.0.1:{port}/",
        http_headers={"Host": host_http, PROXY_TOKEN_HEADER: http["http_token"]},
        ws_headers={"Host": host_ws, PROXY_TOKEN_HEADER: ws["websocket_token"]},
    )


def measure_revocation(api: Api, sandbox_id: str, ports: list[int], rounds: int = 5) -> list[float]:
    """Seconds from the revoke call returning to every gateway process refusing the grant."""
    times = []
    for _ in range(rounds):
        target = api.call(
            "POST",
            f"/sandboxes/{sandbox_id}/ports/8080/preview-proxy-target",
            {"transports": ["http"]},
        )
        headers = {
            "Host": target["http_url"].split("/")[2],
            PROXY_TOKEN_HEADER: target["http_token"],
        }
        clients = [
            httpx.Client(base_url=f"http://127.0.0.1:{p}", headers=headers, timeout=5)
            for p in ports
        ]
        for client in clients:  # warm each process's grant cache with an admitted request
            assert client.get("/small").status_code == 200
        api.call("DELETE", f"/sandboxes/{sandbox_id}/preview-urls/{target['grant']['id']}")
        revoked_at = time.perf_counter()
        pending = set(range(len(clients)))
        deadline = revoked_at + 10
        while pending and time.perf_counter() < deadline:
            for index in list(pending):
                if clients[index].get("/small").status_code in (401, 403):
                    pending.discard(index)
        if pending:
            raise RuntimeError("revocation not seen within 10 s")
        times.append(time.perf_counter() - revoked_at)
        for client in clients:
            client.close()
    return times


def run_all(args) -> str:
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    tmp.chmod(0o755)
    live = None
    try:
        redis_url = args.redis_url
        live = start_live_server(tmp, REDIS_URL=redis_url, RUNTIME_NETNS=args.netns)
        pin(live.process.pid)
        api = Api(live)
        sandbox_id, http_up, ws_up = start_sandbox_upstreams(api, live)

        nginx_port = free_port()
        start_nginx(
            procs,
            tmp,
            "proxy",
            NGINX_PROXY.format(
                port=nginx_port,
                http_upstream=f"{http_up[0]}:{http_up[1]}",
                ws_upstream=f"{ws_up[0]}:{ws_up[1]}",
            ),
            nginx_port,
        )

        # The candidates for the default server, each serving the same gateway code: daphne
        # (`serve --server daphne`), the fleet entry on uvicorn with our protocol, granian
        # and hypercorn (both on the fleet entry, stock settings).
        python, uvicorn, granian, hypercorn = (
            str(VENV_BIN / n) for n in ("python", "uvicorn", "granian", "hypercorn")
        )
        ports = {name: free_port() for name in (DAPHNE, FLEET, GRANIAN, HYPERCORN)}
        commands = {
            DAPHNE: [python, "manage.py", "serve", "--no-worker", "--server", "daphne",
                     "--host", "127.0.0.1", "--port", str(ports[DAPHNE])],
            FLEET: [uvicorn, "gateway.asgi:application", "--host", "127.0.0.1",
                    "--port", str(ports[FLEET]), "--no-access-log", "--loop", "uvloop",
                    "--http", "gateway.httpserver:HttpProtocol", "--ws", "websockets-sansio"],
            GRANIAN: [granian, "--interface", "asgi", "--loop", "uvloop", "--ws",
                      "--host", "127.0.0.1", "--port", str(ports[GRANIAN]), "gateway.asgi:application"],
            HYPERCORN: [hypercorn, "-k", "uvloop", "-b", f"127.0.0.1:{ports[HYPERCORN]}",
                        "gateway.asgi:application"],
        }  # fmt: skip
        for name, command in commands.items():
            if name in args.skip:
                continue
            procs.start(command, log=tmp / f"{name.split()[1]}.log", cwd=ROOT, env=live.env)
        for name, port in ports.items():
            if name not in args.skip:
                wait_port(port)

        targets = [
            Target("direct", f"http://{http_up[0]}:{http_up[1]}", f"ws://{ws_up[0]}:{ws_up[1]}/"),
            Target("nginx", f"http://127.0.0.1:{nginx_port}", f"ws://127.0.0.1:{nginx_port}/ws"),
            gateway_target(DEFAULT, live.port, api, sandbox_id),
            *(
                gateway_target(name, port, api, sandbox_id)
                for name, port in ports.items()
                if name not in args.skip
            ),
        ]
        # Rounds interleave the targets, so a burst of outside load hits all of them alike;
        # each cell reports the median over rounds.
        rounds: dict[str, dict[str, list]] = {t.name: {} for t in targets}
        failed: dict[str, str] = {}
        for number in range(args.rounds):
            for target in targets:
                if target.name in failed:
                    continue
                try:
                    measured = measure(target, args.seconds)
                except Exception as exc:
                    # A candidate server that cannot serve the gateway is reported, not fatal.
                    failed[target.name] = str(exc).splitlines()[0]
                    print(f"{target.name} failed: {exc}", file=sys.stderr)
                    rounds.pop(target.name, None)
                    continue
                for metric, value in measured.items():
                    rounds[target.name].setdefault(metric, []).append(value)
                print(f"round {number + 1}: measured {target.name}", file=sys.stderr)
        results = {
            name: {metric: median_of(values) for metric, values in row.items()}
            for name, row in rounds.items()
        }
        revocation = measure_revocation(api, sandbox_id, [live.port, ports[FLEET]])
        table = report(results, revocation, args)
        for name, reason in failed.items():
            table += f"\n{name}: could not be measured: {reason}\n"
        return table
    finally:
        procs.stop_all()
        if live is not None:
            live.stop()
        shutil.rmtree(tmp, ignore_errors=True)


DEFAULT = "gateway (default: uvicorn, manage.py serve)"
DAPHNE = "gateway (daphne, serve --server daphne)"
FLEET = "gateway (fleet: uvicorn gateway.asgi)"
GRANIAN = "gateway (granian, gateway.asgi)"
HYPERCORN = "gateway (hypercorn, gateway.asgi)"


def measure(target: Target, seconds: int) -> dict[str, object]:
    row: dict[str, object] = {}
    for path, label in (("small", "13 B"), ("big", "1 MiB")):
        # Warm up connections, caches and the upstream pool.
        run_wrk(
            f"{target.http_base}/{path}",
            connections=8,
            seconds=1,
            headers=target.http_headers,
            warm_up=True,
        )
        for conns in (1, 32):
            row[f"{label} c{conns}"] = run_wrk(
                f"{target.http_base}/{path}",
                connections=conns,
                seconds=seconds,
                headers=target.http_headers,
            )
    row["ws"] = run_ws(target.ws_url, connections=32, seconds=seconds, headers=target.ws_headers)
    return row


def median_of(values: list):
    kind = type(values[0])
    return kind(
        **{
            name: statistics.median(getattr(v, name) for v in values)
            for name in kind.__dataclass_fields__
        }
    )


def report(results: dict, revocation: list[float], args) -> str:
    direct, nginx = results["direct"], results["nginx"]
    lines = [
        "# Preview gateway benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} cores; servers and upstreams pinned to "
        f"core {SERVER_CORE}, load (wrk -t1, a uvloop WebSocket client) to core {LOAD_CORE}; {args.seconds} s per cell, "
        f"median of {args.rounds} interleaved rounds; upstreams: nginx static files and a `websockets` echo "
        "server running inside a real sandbox; the gateway checks a proxy-token grant on every request.",
        "",
        f"Load average (1/5/15 min) at start {_load(args.load_start)}, at end {_load(os.getloadavg())}. "
        f"Command: `{' '.join(['.venv/bin/python', 'bench/gateway_bench.py', *sys.argv[1:]])}`",
        "",
        "| target | metric | value | p50 ms | p99 ms | errors | vs direct | vs nginx |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results.items():
        for metric, value in row.items():
            if isinstance(value, HttpResult):
                rate, base_d, base_n = value.rps, direct[metric].rps, nginx[metric].rps
                errors = value.errors + value.non2xx
                shown = f"{rate:,.0f} req/s"
            else:
                rate, base_d, base_n = (
                    value.msgs_per_s,
                    direct[metric].msgs_per_s,
                    nginx[metric].msgs_per_s,
                )
                errors = value.errors
                shown = f"{rate:,.0f} msg/s"
                metric = "WS echo, 32 conns"
            lines.append(
                f"| {name} | {metric} | {shown} | {value.p50_ms:.3f} | {value.p99_ms:.3f} | {errors} | "
                f"{rate / base_d:.1%} | {rate / base_n:.1%} |"
            )
    lines += [
        "",
        "## Against the targets (ratios to nginx in the same run)",
        "",
        "| target | goal | " + " | ".join(n for n in results if n.startswith("gateway")) + " |",
        "|---|---|" + "---:|" * sum(1 for n in results if n.startswith("gateway")),
    ]
    gateways = [row for name, row in results.items() if name.startswith("gateway")]

    def cells(values, goal_met) -> str:
        return " | ".join(f"{text} {'met' if goal_met(v) else 'NOT met'}" for text, v in values)

    for metric, attr, goal, label in (
        ("13 B c32", "rps", 0.30, "req/s 13 B c32"),
        ("1 MiB c32", "rps", 1.00, "req/s 1 MiB c32"),
        ("ws", "msgs_per_s", 0.80, "WS msg/s, 32 conns"),
    ):
        ratios = [getattr(g[metric], attr) / getattr(nginx[metric], attr) for g in gateways]
        shown = cells([(f"{r:.1%}", r) for r in ratios], lambda r, goal=goal: r >= goal)
        lines.append(f"| {label} | >= {goal:.0%} | {shown} |")
    added = [g["13 B c1"].p50_ms - direct["13 B c1"].p50_ms for g in gateways]
    shown = cells([(f"{a:.3f} ms", a) for a in added], lambda a: a < 0.5)
    lines.append(f"| added p50 at c=1 over direct (13 B) | < 0.5 ms | {shown} |")
    added_n = nginx["13 B c1"].p50_ms - direct["13 B c1"].p50_ms
    lines += [
        f"\nnginx adds {added_n:.3f} ms p50 at c=1.",
        "",
        "## Revocation propagation (two gateway processes on Redis: default + fleet)",
        "",
        f"Revoke via DELETE /v1/.../preview-urls/{{id}}, then poll both processes until each answers 401/403: "
        f"{len(revocation)} rounds, median {statistics.median(revocation) * 1000:.1f} ms, "
        f"max {max(revocation) * 1000:.1f} ms.",
    ]
    return "\n".join(lines) + "\n"


def _load(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=int, default=5, help="duration of each wrk / WebSocket cell"
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    )
    parser.add_argument(
        "--netns", default="auto", help="RUNTIME_NETNS for the sandbox (auto|on|off)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds; each cell is their median"
    )
    parser.add_argument(
        "--skip", action="append", default=[], help="a candidate server's target name to leave out"
    )
    args = parser.parse_args()
    args.load_start = os.getloadavg()
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install -y nginx-light wrk util-linux")
    table = run_all(args)
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(table)


if __name__ == "__main__":
    main()
