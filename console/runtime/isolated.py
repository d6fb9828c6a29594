"""The isolated local driver: every sandbox is a machine of its own (docs/runtime.md).

Per sandbox, under RUNTIME_ROOT/<sandbox_id>/:
    disk.img, disk/            its writable layer's disk (layers.py); its root file system
                               is mounted at /run/nullspace/roots-<tag>/<sandbox_id>
    bundle/config.json         the OCI description crun runs (oci.py)
    state/                     outside the sandbox: sandbox.json, procs/<pid>/

A sandbox is a crun container: its own pid, mount, UTS (hostname = its label), IPC,
cgroup and user namespaces (root inside is `id_base` outside), the network namespace
of netns.py with the egress policy of netpolicy.py, limits in its cgroup. Processes
are `crun exec`s under the same supervisors as the unisolated driver (local.py), so
logs, stdin, PTYs and waiting work the same. Files are reached through the sandbox's
file store (filestore.py), which cannot leave its root.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.runtime import cgroups, layers, netpolicy, oci, paths, proclog
from console.runtime import crun as crun_mod
from console.runtime import image as images
from console.runtime import netns as net
from console.runtime.base import (
    CreateSpec,
    ExecRequest,
    FileEntry,
    FileMissing,
    Metrics,
    PathRefused,
    PtyRequest,
    RuntimeError_,
    SandboxMissing,
    VolumeMount,
)
from console.runtime.filestore import LocalFileStore
from console.runtime.layer_store import MAX_STACK, Collection, LayerStore
from console.runtime.local import LocalDriver, _kill_supervisor
from console.runtime.supervise import MAX_OUTPUT_BYTES

log = logging.getLogger(__name__)

WORKSPACE = "/workspace"
INIT = ["/usr/bin/tini", "-s", "--", "/bin/sleep", "infinity"]


class IsolationUnavailable(RuntimeError_):
    code = "runtime_unavailable"


def missing_requirements() -> list[str]:
    """What this machine lacks for isolated sandboxes (empty: everything is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the runtime mounts file systems and makes namespaces)")
    for problem in (crun_mod.available(), netpolicy.available()):
        if problem:
            missing.append(problem)
    if not net.available():
        missing.append("iproute2 (`ip`) and a writable /run for network namespaces")
    missing += [f"{tool} (e2fsprogs/util-linux)" for tool in layers.tools_missing()]
    if not paths.available():
        missing.append("openat2(2) (Linux 5.6 or later)")
    if "overlay" not in _filesystems():
        missing.append("the overlay file system (modprobe overlay)")
    if not Path("/dev/loop-control").exists():
        missing.append("loop devices (/dev/loop-control)")
    return missing


def _filesystems() -> str:
    try:
        return Path("/proc/filesystems").read_text()
    except OSError:
        return ""


class IsolatedDriver(LocalDriver):
    def __init__(
        self,
        root: Path | str,
        subnet: str,
        *,
        image_cache: Path | str,
        image_suite: str = "bookworm",
        image_mirror: str = "http://deb.debian.org/debian",
        id_base: int = 1_000_000,
        disk_mb: int = 2048,
        pids_limit: int = 1024,
        open_files: int = 4096,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        ubuntu_mirror: str = "",
        layer_dir: Path | str | None = None,
    ) -> None:
        super().__init__(
            root, subnet, netns="off", cgroups=False, max_output_bytes=max_output_bytes
        )
        self.missing = missing_requirements()
        self.use_netns = not self.missing
        self.use_mounts = False
        self.image_cache = Path(image_cache)
        self.image_suite = image_suite
        self.image_mirror = image_mirror
        self.ubuntu_mirror = ubuntu_mirror
        self.id_base = id_base
        self.default_disk_mb = disk_mb
        self.pids_limit = pids_limit
        self.open_files = open_files
        self.crun = crun_mod.Crun(net.SHARED_DIR / f"crun-{self.tag}")
        self.roots = net.SHARED_DIR / f"roots-{self.tag}"
        if not self.missing:
            # crun enters a root as the sandbox's (unprivileged) root user: the way there
            # must be traversable whatever the umask.
            self.roots.mkdir(parents=True, exist_ok=True)
            for place in (net.SHARED_DIR, self.roots):
                place.chmod(0o755)
        self.cgroup_parent = f"/nullspace-{self.tag}"
        self.layer_store = LayerStore(Path(layer_dir or self.image_cache / "layers"))

    def _rootfs(self, sandbox_id: str) -> Path:
        self._dir(sandbox_id)  # validates the id
        return self.roots / sandbox_id

    # --- requirements and the image ---------------------------------------------------
    def require(self) -> None:
        if self.missing:
            raise IsolationUnavailable(
                "this server cannot isolate sandboxes: missing "
                + "; ".join(self.missing)
                + ". Install them (bin/setup does as root), or set RUNTIME_ISOLATION=none "
                "to run unisolated sandboxes on a machine you trust."
            )

    def image(self, name: str = "base", suite: str | None = None) -> images.Image:
        """A builtin image by name (console/runtime/image.py VARIANTS) of a Debian suite
        (default: the server's), built on first use. `ubuntu-<codename>` is Ubuntu's,
        from the configured Ubuntu mirror (main and universe: tini is in universe)."""
        suite = suite or self.image_suite
        if suite.startswith("ubuntu-"):
            if not self.ubuntu_mirror:
                raise RuntimeError_(
                    "Ubuntu images need RUNTIME_UBUNTU_MIRROR", code="invalid_request"
                )
            return images.ensure_image(
                self.image_cache,
                suite.removeprefix("ubuntu-"),
                self.ubuntu_mirror,
                self.id_base,
                name,
                components=("main", "universe"),
            )
        return images.ensure_image(self.image_cache, suite, self.image_mirror, self.id_base, name)

    def _lower_dirs(self, spec: CreateSpec, image: images.Image) -> str:
        """overlayfs lowerdir: the template's layers, topmost first, then the image."""
        if len(spec.layers) > MAX_STACK:
            raise RuntimeError_(
                f"a template may have at most {MAX_STACK} layers", code="invalid_request"
            )
        for layer_id in spec.layers:
            if not self.layer_store.exists(layer_id):
                raise RuntimeError_(
                    f"template layer {layer_id} is missing from this server's layer store",
                    code="template_not_found",
                )
            self.layer_store.touch(layer_id)
        return ":".join([*(str(self.layer_store.path(i)) for i in spec.layers), str(image.rootfs)])

    # --- lifecycle -------------------------------------------------------------------
    def create(self, spec: CreateSpec, *, mounts: Sequence[VolumeMount] = ()) -> dict[str, Any]:
        self.require()
        if spec.template not in images.VARIANTS:
            raise RuntimeError_(f"template {spec.template!r} not found", code="template_not_found")
        base = self._dir(spec.sandbox_id)
        if self.exists(spec.sandbox_id):
            raise RuntimeError_(f"sandbox {spec.sandbox_id} already exists", code="conflict")
        if base.exists():
            self.destroy(spec.sandbox_id)
        image = self.image(spec.template, spec.image_suite)
        lower = self._lower_dirs(spec, image)
        disk_mb = spec.disk_mb or self.default_disk_mb
        hostname = spec.hostname or spec.sandbox_id.replace("_", "-").lower()
        limits = oci.Limits(spec.memory_mb, spec.vcpus, self.pids_limit, self.open_files)
        network: dict[str, Any] = {}
        try:
            (base / "state" / "procs").mkdir(parents=True)
            # The network (namespace, veth, nftables) and the disk (image copy, mounts) are
            # independent: made side by side, they cost the longer of the two.
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = pool.submit(self._make_network, spec)
                try:
                    rootfs = layers.create(
                        base,
                        lower,
                        self._rootfs(spec.sandbox_id),
                        disk_mb=disk_mb,
                        id_base=self.id_base,
                        template_cache=self.root / ".disks",
                        mounts=mounts,
                        restore=(lambda upper: _restore(spec.restore_from, upper))
                        if spec.restore_from is not None
                        else None,
                    )
                finally:
                    network = pending.result()
            self._write_identity(rootfs, hostname, network)
            bundle = base / "bundle"
            bundle.mkdir()
            config = oci.config(
                rootfs=str(rootfs),
                hostname=hostname,
                id_base=self.id_base,
                netns_path=str(net.NETNS_DIR / network["netns"]),
                cgroups_path=f"{self.cgroup_parent}/{spec.sandbox_id}",
                limits=limits,
                init=INIT,
                mounts=[],
            )
            (bundle / "config.json").write_text(json.dumps(config))
            self.crun.start(spec.sandbox_id, bundle)
        except Exception:
            self.destroy(spec.sandbox_id)
            raise
        state = {
            "sandbox_id": spec.sandbox_id,
            "driver": "local",
            "isolation": "full",
            "instance": self.tag,
            "image": image.name,
            "layers": list(spec.layers),
            "default_user": spec.default_user or images.DEFAULT_USER,
            "envs": dict(spec.envs),
            "vcpus": spec.vcpus,
            "memory_mb": spec.memory_mb,
            "disk_mb": disk_mb,
            "pids_limit": self.pids_limit,
            "open_files": self.open_files,
            "hostname": hostname,
            "cwd": spec.cwd,
            "network": network,
            "egress": netpolicy.as_dict(spec.egress),
            "mounts": [
                {"source": str(m.source), "target": m.target, "read_only": m.read_only}
                for m in mounts
            ],
            "isolated_network": True,
            "paused": False,
            "created_at": time.time(),
        }
        self._write_state(spec.sandbox_id, state)
        return {
            k: state[k]
            for k in ("driver", "isolation", "instance", "network", "egress", "isolated_network")
        }

    def _make_network(self, spec: CreateSpec) -> dict[str, Any]:
        network = net.create(
            self.tag,
            spec.sandbox_id,
            self.subnet,
            str(self.root),
            default_route=netpolicy.any_egress(spec.egress),
        ).as_dict()
        netpolicy.apply(self.tag, network["host_if"], spec.egress)
        return network

    def _write_identity(self, rootfs: Path, hostname: str, network: dict[str, Any]) -> None:
        store = LocalFileStore(str(rootfs), id_base=self.id_base)
        servers = netpolicy.nameservers()
        resolv = "".join(f"nameserver {s}\n" for s in servers) or "# no resolver reachable\n"
        for path, text in (
            ("/etc/hostname", f"{hostname}\n"),
            (
                "/etc/hosts",
                f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"
                f"{network['sandbox_addr']}\t{hostname}\n::1\tlocalhost ip6-localhost\n",
            ),
            ("/etc/resolv.conf", resolv),
        ):
            if store.exists(path) and store.stat(path).type == "symlink":
                store.remove(path)
            store.write(path, [text.encode()], limit=1 << 16, user="root", mode=0o644)

    def destroy(self, sandbox_id: str) -> None:
        base = self._dir(sandbox_id)
        state = proclog.read_json(base / "state" / "sandbox.json") or {}
        init = self.crun.init_pid(sandbox_id)
        if state.get("paused"):
            self.crun.resume(sandbox_id, check=False)  # frozen processes die only once thawed
        self.crun.delete(sandbox_id)  # --force: kills its pid 1, and with it every process
        deadline = time.monotonic() + 5
        while init is not None and _alive(init) and time.monotonic() < deadline:
            time.sleep(0.005)  # its mounts are released once its last process is gone
        procs = base / "state" / "procs"
        if procs.is_dir():
            for procdir in procs.iterdir():
                meta = proclog.read_json(procdir / "meta.json")
                if meta and meta.get("supervisor_pid"):
                    _kill_supervisor(int(meta["supervisor_pid"]))
        # With every process gone, the network and the disk come apart side by side.
        with ThreadPoolExecutor(max_workers=1) as pool:
            network_done = pool.submit(self._remove_network, sandbox_id, state)
            try:
                layers.destroy(base, self._rootfs(sandbox_id))
            finally:
                network_done.result()
        self._cpu_samples.pop(sandbox_id, None)
        shutil.rmtree(base, ignore_errors=True)
        if base.exists():
            shutil.rmtree(base, ignore_errors=True)

    def _remove_network(self, sandbox_id: str, state: dict[str, Any]) -> None:
        network = dict(state.get("network") or {})
        if not network and self.use_netns:
            network = net.leftovers(self.tag).get(sandbox_id, {})
        if network.get("host_if"):
            netpolicy.remove(self.tag, network["host_if"])
        if network:
            net.delete(network)

    def pause(self, sandbox_id: str) -> None:
        state = self._state(sandbox_id)
        if not state.get("paused"):
            self.crun.pause(sandbox_id)
        self._write_state(sandbox_id, {**state, "paused": True})

    def resume(self, sandbox_id: str) -> None:
        state = self._state(sandbox_id)
        if not self.crun.exists(sandbox_id):
            raise SandboxMissing(f"sandbox {sandbox_id} is not running here any more")
        if state.get("paused"):
            self.crun.resume(sandbox_id)
        self._write_state(sandbox_id, {**state, "paused": False})

    def exists(self, sandbox_id: str) -> bool:
        try:
            self._state(sandbox_id)
        except SandboxMissing:
            return False
        # After a reboot the directory survives but the container does not.
        return self.crun.exists(sandbox_id) and self.crun.init_pid(sandbox_id) is not None

    def reconcile(self, live_sandbox_ids: set[str]) -> list[str]:
        found: set[str] = set()
        for entry in self.root.iterdir():
            if (
                entry.is_dir()
                and not entry.name.startswith(".")
                and set(entry.name)
                <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
            ):
                found.add(entry.name)
        found.update(self.crun.known())
        if self.roots.is_dir():
            found.update(p.name for p in self.roots.iterdir())
        found.update(cgroups.leftovers(self.cgroup_parent))
        if net.available():
            found.update(net.leftovers(self.tag))
        removed = sorted(found - set(live_sandbox_ids))
        for sandbox_id in removed:
            try:
                self.destroy(sandbox_id)
            except Exception:
                log.exception("reconcile could not remove sandbox %s", sandbox_id)
        if not live_sandbox_ids:
            # Nothing of this instance is left: its shared names go too.
            cgroups.remove_parent(self.cgroup_parent)
            if shutil.which("nft"):
                netpolicy.drop_table(self.tag)
            for place in (self.crun.state_dir, self.roots):
                try:
                    place.rmdir()
                except OSError:
                    pass
        return removed

    # --- processes -------------------------------------------------------------------
    def start_process(
        self,
        sandbox_id: str,
        request: ExecRequest,
        *,
        default_cwd: str,
        envs: dict[str, str],
        tty: dict[str, Any] | None = None,
    ) -> int:
        state = self._state(sandbox_id)
        if not request.command:
            raise RuntimeError_("empty command", code="invalid_request")
        store = self.files(sandbox_id, cwd=default_cwd or WORKSPACE)
        account = store.account(request.user)
        cwd = store.path(request.cwd or default_cwd or account.home)
        if not store.is_dir(cwd):
            raise PathRefused(f"working directory {cwd} does not exist in the sandbox")
        if request.shell:
            argv = ["/bin/bash", "-c", request.command, *request.args]
            display = request.command
        else:
            argv = [request.command, *request.args]
            display = shlex.join(argv)
        env = {
            "PATH": oci.DEFAULT_PATH,
            "HOME": account.home,
            "USER": account.name,
            "LOGNAME": account.name,
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "TERM": "xterm-256color",
            "PWD": cwd,
            "NULLSPACE_SANDBOX_ID": sandbox_id,
            "NULLSPACE_SANDBOX": "true",
        }
        for layer in (state.get("envs") or {}, envs, request.envs):
            env.update({str(k): str(v) for k, v in (layer or {}).items()})
        limits = oci.Limits(
            int(state["memory_mb"]),
            int(state["vcpus"]),
            int(state["pids_limit"]),
            int(state["open_files"]),
        )
        user = oci.User(account.name, account.uid, account.gid, account.home, account.groups)
        process = oci.process(
            argv, user=user, cwd=cwd, env=env, limits=limits, terminal=tty is not None
        )
        spec: dict[str, Any] = {
            "display": display,
            "stdin": request.stdin,
            "crun": {
                "base": ["crun", "--root", str(self.crun.state_dir)],
                "container": sandbox_id,
                "hide_unified": crun_mod.hybrid_with_v2_controllers(),
            },
            "oom_file": cgroups.oom_file(f"{self.cgroup_parent}/{sandbox_id}"),
            "max_output_bytes": self.max_output_bytes,
        }
        if tty:
            spec["tty"] = tty
            # Short: a unix socket path has at most 107 bytes, procdirs can be longer.
            spec["crun"]["console_socket"] = str(net.SHARED_DIR / f"pty-{uuid.uuid4().hex}.sock")
        return self._launch(sandbox_id, spec, display, {"process.json": json.dumps(process)})

    def start_pty(
        self, sandbox_id: str, request: PtyRequest, *, default_cwd: str, envs: dict[str, str]
    ) -> int:
        tty = {"session_id": request.session_id, "cols": request.cols, "rows": request.rows}
        exec_request = ExecRequest(
            command="/bin/bash", args=["-l"], cwd=request.cwd, envs=request.envs
        )
        return self.start_process(
            sandbox_id, exec_request, default_cwd=default_cwd, envs=envs, tty=tty
        )

    def kill_process(self, sandbox_id: str, pid: int) -> None:
        procdir = self._procdir(sandbox_id, pid)
        meta = proclog.read_json(procdir / "meta.json") or {}
        if proclog.exit_code(procdir) is not None or not proclog.is_alive(meta):
            return
        # Its process group (crun's session) and the process itself; SIGKILL ends a frozen one.
        try:
            group = os.getpgid(int(pid))
            if group != os.getpgid(0):
                os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # --- files -----------------------------------------------------------------------
    def files(self, sandbox_id: str, *, cwd: str | None = None) -> LocalFileStore:
        state = self._state(sandbox_id)
        return LocalFileStore(
            str(self._rootfs(sandbox_id)),
            id_base=self.id_base,
            cwd=cwd or state.get("cwd") or WORKSPACE,
            default_user=state.get("default_user") or images.DEFAULT_USER,
            kernel_mounts=oci.KERNEL_MOUNTS,
        )

    def host_path(
        self, sandbox_id: str, path: str, *, must_exist: bool = False, follow_symlinks: bool = True
    ) -> Path:
        """Transitional: the host path of a sandbox path, resolved inside the sandbox's root
        (console modules not yet on the file store use it)."""
        store = self.files(sandbox_id)
        spath = store.path(path)
        try:
            return Path(store.host_path(spath, follow=follow_symlinks))
        except FileMissing:
            if must_exist:
                raise
        parent = paths.normalize("..", spath)
        try:
            return Path(store.host_path(parent)) / os.path.basename(spath)
        except FileMissing:
            raise FileMissing(f"{os.path.dirname(spath)} does not exist") from None

    def file_info(self, sandbox_id: str, path: str) -> FileEntry:
        store = self.files(sandbox_id)
        return store.stat(store.path(path))

    def list_files(self, sandbox_id: str, path: str, depth: int = 1) -> list[FileEntry]:
        store = self.files(sandbox_id)
        return store.list(store.path(path), max(1, int(depth)))

    # --- template layers ----------------------------------------------------------------
    def capture_layer(self, sandbox_id: str, layer_id: str) -> int:
        """The sandbox's writable layer (what it changed over its lower layers), kept as
        template layer `layer_id` (console/runtime/layer_store.py)."""
        self._state(sandbox_id)
        return self.layer_store.capture(self._dir(sandbox_id) / "disk" / "upper", layer_id)

    def has_layer(self, layer_id: str) -> bool:
        return self.layer_store.exists(layer_id)

    def remove_layer(self, layer_id: str) -> None:
        self.layer_store.remove(layer_id)

    def touch_layer(self, layer_id: str) -> None:
        self.layer_store.touch(layer_id)

    def layers_in_use(self) -> set[str]:
        used: set[str] = set()
        for entry in self.root.iterdir() if self.root.is_dir() else ():
            try:
                used.update(self._state(entry.name).get("layers") or ())
            except (SandboxMissing, RuntimeError_, OSError, ValueError):
                continue  # not a sandbox's directory
        return used

    def collect_layers(
        self, referenced: set[str], grace_seconds: float, *, dry_run: bool = False
    ) -> Collection:
        return self.layer_store.collect(referenced, grace_seconds, dry_run=dry_run)

    # --- snapshots, metrics -------------------------------------------------------------
    def snapshot(self, sandbox_id: str, archive: Path) -> int:
        """The writable layer (which holds /workspace and every other change) as a tar.gz,
        with the overlay's whiteouts and opaque-directory marks, ids as stored."""
        self._state(sandbox_id)
        upper = self._dir(sandbox_id) / "disk" / "upper"
        archive = Path(archive)
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
        try:
            _tar("-c", "-f", str(tmp), "-C", str(upper), ".")
            os.replace(tmp, archive)
        finally:
            tmp.unlink(missing_ok=True)
        return archive.stat().st_size

    def metrics(self, sandbox_id: str) -> Metrics:
        state = self._state(sandbox_id)
        path = f"{self.cgroup_parent}/{sandbox_id}"
        vcpus = max(1, int(state.get("vcpus") or 1))
        now, used = time.monotonic(), cgroups.cpu_seconds(path)
        last = self._cpu_samples.get(sandbox_id)
        if last is None or not 0.05 <= now - last[0] <= 60:
            time.sleep(0.2)
            last = (now, used)
            now, used = time.monotonic(), cgroups.cpu_seconds(path)
        self._cpu_samples[sandbox_id] = (now, used)
        percent = max(0.0, used - last[1]) / max(now - last[0], 1e-6) / vcpus * 100
        disk = os.statvfs(self._dir(sandbox_id) / "disk")
        host_if = (state.get("network") or {}).get("host_if")
        rx, tx = net.counters(host_if) if host_if else (None, None)
        return Metrics(
            timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            cpu_percent=round(min(percent, 100.0), 2),
            cpu_count=vcpus,
            mem_used_bytes=cgroups.memory_bytes(path),
            mem_total_bytes=int(state.get("memory_mb") or 0) * 1024 * 1024,
            disk_used_bytes=(disk.f_blocks - disk.f_bfree) * disk.f_frsize,
            disk_total_bytes=int(state.get("disk_mb") or 0) * 1024 * 1024,
            network_rx_bytes=rx,
            network_tx_bytes=tx,
        )


def _alive(pid: int) -> bool:
    """The process runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _tar(*args: str) -> None:
    command = [
        "tar",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=trusted.overlay.*",
        "--use-compress-program=gzip -1",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if result.returncode not in (0, 1):  # 1: a file changed while it was read
        raise RuntimeError_(f"tar: {result.stderr.strip()[-500:]}")


def _restore(archive: Path | None, upper: Path) -> None:
    if archive is None:
        return
    if not Path(archive).is_file():
        raise RuntimeError_(f"snapshot archive {archive} is missing", code="snapshot_not_found")
    _tar("-x", "-f", str(archive), "-C", str(upper))
