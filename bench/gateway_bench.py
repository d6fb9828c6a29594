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


def run_wrk(url: str, *, connections: int, seconds: int, headers: dict[str, str]) -> HttpResult:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, *args, url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))

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


WS_CLIENT = """
import asyncio, json, sys, time
import aiohttp

async def one(session, url, headers, deadline, limit, rtts, errors):
    try:
        async with session.ws_connect(url, headers=headers, autoping=False, compress=0) as ws:
            payload = "x" * 32
            while time.monotonic() < deadline and len(rtts) < limit:
                start = time.perf_counter()
                await ws.send_str(payload)
                msg = await ws.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    errors.append(str(msg.type))
                    return
                rtts.append(time.perf_counter() - start)
    except Exception as exc:
        errors.append(type(exc).__name__)

async def main():
    url, headers, conns, seconds, limit = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    rtts, errors = [], []
    async with aiohttp.ClientSession() as session:
        # Warm up: open every connection before timing starts.
        deadline = time.monotonic() + seconds
        started = time.monotonic()
        await asyncio.gather(*(one(session, url, headers, deadline, limit, rtts, errors) for _ in range(conns)))
        elapsed = time.monotonic() - started
    rtts.sort()
    pick = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1000 if rtts else 0.0
    print(json.dumps({"count": len(rtts), "elapsed": elapsed, "p50": pick(0.5), "p99": pick(0.99), "errors": len(errors)}))

asyncio.run(main())
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
    where = live.manage(
        "shell",
        "-c",
        "from console.runtime import get_driver; d = get_driver(); "
        f"print(*d.upstream('{sandbox_id}', 8080), *d.upstream('{sandbox_id}', 8081))",
    ).splitlines()[-1].split()
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

        uvicorn_port = free_port()
        procs.start(
            [
                str(VENV_BIN / "uvicorn"),
                "console.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(uvicorn_port),
                "--no-access-log",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--ws",
                "websockets",
                "--lifespan",
                "off",
            ],
            log=tmp / "uvicorn.log",
            cwd=ROOT,
            env=live.env,
        )
        wait_port(uvicorn_port)

        targets = [
            Target("direct", f"http://{http_up[0]}:{http_up[1]}", f"ws://{ws_up[0]}:{ws_up[1]}/"),
            Target("nginx", f"http://127.0.0.1:{nginx_port}", f"ws://127.0.0.1:{nginx_port}/ws"),
            gateway_target("gateway (daphne)", live.port, api, sandbox_id),
            gateway_target("gateway (uvicorn)", uvicorn_port, api, sandbox_id),
        ]
        results: dict[str, dict[str, object]] = {}
        for target in targets:
            row: dict[str, object] = {}
            for path, label in (("small", "13 B"), ("big", "1 MiB")):
                # Warm up connections, caches and the upstream pool.
                run_wrk(
                    f"{target.http_base}/{path}",
                    connections=8,
                    seconds=1,
                    headers=target.http_headers,
                )
                for conns in (1, 32):
                    row[f"{label} c{conns}"] = run_wrk(
                        f"{target.http_base}/{path}",
                        connections=conns,
                        seconds=args.seconds,
                        headers=target.http_headers,
                    )
            row["ws"] = run_ws(
                target.ws_url, connections=32, seconds=args.seconds, headers=target.ws_headers
            )
            results[target.name] = row
            print(f"measured {target.name}", file=sys.stderr)
        revocation = measure_revocation(api, sandbox_id, [live.port, uvicorn_port])
        return report(results, revocation, args)
    finally:
        procs.stop_all()
        if live is not None:
            live.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict, revocation: list[float], args) -> str:
    direct, nginx = results["direct"], results["nginx"]
    lines = [
        "# Preview gateway benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} cores; servers pinned to core {SERVER_CORE}, "
        f"load (wrk -t1, aiohttp WS client) to core {LOAD_CORE}; {args.seconds} s per cell; upstreams: nginx static "
        "files and a `websockets` echo server running inside a real sandbox; the gateway checks a proxy-token "
        "grant on every request.",
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
        "## Against the targets",
        "",
        "| target | goal | daphne | uvicorn |",
        "|---|---|---:|---:|",
    ]
    d, u = results["gateway (daphne)"], results["gateway (uvicorn)"]

    def ratio(row, metric, attr):
        return getattr(row[metric], attr) / getattr(nginx[metric], attr)

    for metric, goal in (("13 B c32", 0.15), ("1 MiB c32", 0.40)):
        lines.append(
            f"| req/s {metric} vs nginx | >= {goal:.0%} | {ratio(d, metric, 'rps'):.1%} | {ratio(u, metric, 'rps'):.1%} |"
        )
    lines.append(
        f"| WS msg/s vs nginx | >= 60% | {ratio(d, 'ws', 'msgs_per_s'):.1%} | {ratio(u, 'ws', 'msgs_per_s'):.1%} |"
    )
    added_d = d["13 B c1"].p50_ms - direct["13 B c1"].p50_ms
    added_u = u["13 B c1"].p50_ms - direct["13 B c1"].p50_ms
    added_n = nginx["13 B c1"].p50_ms - direct["13 B c1"].p50_ms
    lines.append(
        f"| added p50 at c=1 over direct (13 B) | < 0.5 ms | {added_d:.3f} ms | {added_u:.3f} ms |"
    )
    lines += [
        f"\nnginx adds {added_n:.3f} ms p50 at c=1.",
        "",
        "## Revocation propagation (two gateway processes on Redis: daphne + uvicorn)",
        "",
        f"Revoke via DELETE /v1/.../preview-urls/{{id}}, then poll both processes until each answers 401/403: "
        f"{len(revocation)} rounds, median {statistics.median(revocation) * 1000:.1f} ms, "
        f"max {max(revocation) * 1000:.1f} ms.",
    ]
    return "\n".join(lines) + "\n"


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
    args = parser.parse_args()
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
