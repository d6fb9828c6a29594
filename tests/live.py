"""A real server in a subprocess (`manage.py serve` on a free port, its own data directory and
database), for contract tests with the real `nullspace` CLI and for browser tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fresh_database_url() -> str | None:
    """On PostgreSQL, a new empty database per live server; on SQLite, none (file in DATA_DIR)."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        return None
    import psycopg

    name = "live_" + uuid.uuid4().hex[:10]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


def _drop_database(url: str) -> None:
    """Drop a live server's own PostgreSQL database (CI must not leave one per server)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = os.environ["DATABASE_URL"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class LiveServer:
    url: str
    port: int
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None
    api_key: str = field(default="", repr=False)
    log_path: Path | None = None
    # What `manage.py seed_scale` printed, when the server was started with a seed.
    seed: dict = field(default_factory=dict, repr=False)
    owns_database: bool = True  # False for a second server on another one's database
    worker: bool = True  # False: `serve --no-worker`
    serve_args: tuple[str, ...] = ()  # more `manage.py serve` options, e.g. --server daphne

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def signed_in(self, email: str, password: str) -> httpx.Client:
        """An HTTP client holding a console session, signed in through the real form."""
        client = httpx.Client(base_url=self.url, timeout=30)
        client.get("/signin/")
        answer = client.post(
            "/signin/",
            data={
                "username": email,
                "password": password,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
        )
        if answer.status_code != 302 or "sessionid" not in client.cookies:
            client.close()
            raise AssertionError(f"sign-in as {email} failed: {answer.status_code}")
        return client

    def cli_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NULLSPACE_")}
        env.update(
            NULLSPACE_API_URL=self.url, NULLSPACE_API_KEY=self.api_key, HOME=str(self.data_dir)
        )
        env.update(extra)
        return env

    def cli(
        self, *args: str, check: bool = False, timeout: float = 120, **kwargs
    ) -> subprocess.CompletedProcess:
        """Run the real `nullspace` CLI against this server (cwd is the data dir: no stray .env)."""
        result = subprocess.run(
            [str(VENV_BIN / "nullspace"), *args],
            cwd=self.data_dir,
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"nullspace {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def new_sandbox(self, *options: str) -> str:
        """`nullspace sandbox create --template base` with these options; the new id."""
        created = self.cli("sandbox", "create", "--template", "base", *options, check=True)
        return json.loads(created.stdout)["id"]

    def sandbox_python(self, sandbox_id: str) -> str:
        """A shell prefix that runs Python with `websockets` importable inside the sandbox.

        The venv may live under /tmp, which a sandbox sees as its own private /tmp, so the
        package is copied into the workspace and the base interpreter is used.
        """
        import websockets

        package = Path(websockets.__file__).parent
        files = self.driver().files(sandbox_id)
        for source in sorted(package.rglob("*.py")):
            target = f"/workspace/.pylib/websockets/{source.relative_to(package).as_posix()}"
            files.write(target, [source.read_bytes()], limit=10**7)
        return "PYTHONPATH=/workspace/.pylib python3"

    def driver(self):
        """The live server's runtime, read from its files (any process can drive it)."""
        from console.runtime.isolated import IsolatedDriver
        from console.runtime.local import LocalDriver

        root = Path(self.env.get("RUNTIME_ROOT") or self.data_dir / "sandboxes").resolve()
        subnet = self.env.get("RUNTIME_SUBNET") or "10.213.0.0/16"
        if self.env.get("RUNTIME_ISOLATION") == "none":
            return LocalDriver(root=root, subnet=subnet)
        cache = self.env.get("RUNTIME_IMAGE_CACHE") or "/var/cache/nullspace"
        return IsolatedDriver(root, subnet, image_cache=Path(cache))

    def workspace(self, sandbox_id: str) -> Path:
        """The host directory behind a sandbox's /workspace (for checking effects)."""
        return Path(self.driver().host_path(sandbox_id, "/workspace"))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.destroy_sandboxes()
        own_db = self.env.get("DATABASE_URL", "")
        if self.owns_database and own_db.rsplit("/", 1)[-1].startswith("live_"):
            _drop_database(own_db)

    def destroy_sandboxes(self) -> None:
        """Sandboxes outlive the server by design; a test server's must not outlive the test."""
        from console.volumes.store import ImageStore

        root = Path(self.env.get("RUNTIME_ROOT") or self.data_dir / "sandboxes")
        if root.exists():
            self.driver().reconcile(set())
        volumes = Path(self.env.get("VOLUMES_ROOT") or self.data_dir / "volumes")
        if volumes.exists():  # loop mounts outlive the server too
            ImageStore(volumes).destroy_all()


def start_live_server(
    tmp_dir: Path,
    *,
    same_database_as: LiveServer | None = None,
    seed_scale: float | None = None,
    worker: bool = True,
    serve_args: tuple[str, ...] = (),
    **extra_env: str,
) -> LiveServer:
    """A new server with its own data directory and (on PostgreSQL) its own database, or
    `same_database_as` another server's (two servers side by side on one database).

    `seed_scale` fills a project with `manage.py seed_scale --scale <it>` first (rows
    only: pass worker=False, or start-up reconciliation marks its running rows lost).
    `serve_args` go to `manage.py serve` (e.g. ("--server", "daphne"))."""
    port = free_port()
    data_dir = tmp_dir / f"live-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        DATA_DIR=str(data_dir),
        SITE_URL=f"http://localhost:{port}",
        DEBUG="0",
        STATIC_MANIFEST="0",
        PYTHONUNBUFFERED="1",
        # The server listens on loopback only in tests; so does its SSH relay (docs/ssh.md).
        SSH_RELAY_BIND="127.0.0.1",
        # The machine's layer store is shared by every test run's database: a live
        # server's worker never collects it (docs/templates.md "Garbage collection").
        LAYER_GC_GRACE_HOURS="0",
    )
    db_url = same_database_as.env.get("DATABASE_URL") if same_database_as else _fresh_database_url()
    if db_url:
        env["DATABASE_URL"] = db_url
    env.update(extra_env)
    server = LiveServer(url=f"http://localhost:{port}", port=port, data_dir=data_dir, env=env)
    server.owns_database = same_database_as is None
    server.worker = worker
    server.serve_args = serve_args
    server.manage("migrate", "--noinput")
    server.api_key = server.manage(
        "bootstrap", "--email", "live@example.com", "--team", "live", "--project", "main"
    )
    if seed_scale is not None:
        server.seed = json.loads(server.manage("seed_scale", "--scale", str(seed_scale)))
    server.log_path = data_dir / "server.log"
    launch(server)
    return server


def launch(server: LiveServer) -> None:
    """Start (or start again, after a kill) the server's process; wait until it answers."""
    port = server.port
    log = open(server.log_path or server.data_dir / "server.log", "ab")
    server.process = subprocess.Popen(
        [
            str(VENV_BIN / "python"),
            "manage.py",
            "serve",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            *server.serve_args,
            *([] if server.worker else ["--no-worker"]),
        ],
        cwd=ROOT,
        env=server.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"live server exited:\n{server.log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"live server did not start:\n{server.log_path.read_text()}")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
