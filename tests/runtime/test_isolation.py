"""A sandbox is a machine of its own: what it cannot see, reach or use up (docs/runtime.md).

Every test runs real sandboxes of the isolated driver. Network tests send traffic only
to loopback, to the sandboxes' own namespaces, to a namespace the test makes, and (one
test) to PyPI from a sandbox with internet access.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from console.runtime import cgroups, image
from console.runtime.base import CreateSpec, EgressPolicy, RuntimeError_, VolumeMount
from console.runtime.isolated import IsolatedDriver
from tests.runtime.conftest import IMAGE_CACHE, SUBNET, marked_pids, run, start, wait_http

CHECKOUT = Path(__file__).resolve().parents[2]


def _connect(driver, sandbox_id: str, host: str, port: int, seconds: float = 2) -> str:
    """`ok` when the sandbox opens a TCP connection to host:port, else the error."""
    script = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout={seconds}).close(); print('ok')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"
    )
    code, logs = run(driver, sandbox_id, f"python -c {_quote(script)}", timeout=seconds + 10)
    assert code == 0, logs
    return logs.stdout.strip()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture
def host_server() -> Iterator[int]:
    """A TCP service of the host bound to every address (0.0.0.0)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_host_files_are_invisible_and_unwritable(driver, make_sandbox):
    sandbox_id = make_sandbox()
    secret = Path(settings.DATA_DIR) / "secret_key"
    probe = CHECKOUT / "README.md"
    assert probe.exists()
    command = (
        f"ls {CHECKOUT} {secret} {driver.root} {IMAGE_CACHE}; "
        f"sudo touch {CHECKOUT}/pwned; sudo sh -c 'echo x >> {probe}'; "
        "sudo cat /proc/1/root/etc/hostname"
    )
    code, logs = run(driver, sandbox_id, command)
    assert "No such file or directory" in logs.stderr
    assert str(CHECKOUT) not in logs.stdout and "secret_key" not in logs.stdout
    # What sudo made, it made in the sandbox's own root: the checkout is untouched.
    assert not (CHECKOUT / "pwned").exists()
    assert b"\nx\n" not in probe.read_bytes()[-3:]
    hostname = sandbox_id.replace("_", "-").lower()
    assert logs.stdout.startswith(hostname), logs  # /proc/1 is the sandbox's own init


def test_processes_of_the_host_and_of_other_sandboxes_are_invisible(driver, make_sandbox):
    mine, other = make_sandbox(), make_sandbox()
    marker = f"sleep {4000 + os.getpid() % 1000}.5"
    start(driver, other, marker)
    host = subprocess.Popen(["sleep", "301.25"])
    try:
        deadline = time.monotonic() + 5
        while len(marked_pids(driver, other)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        code, logs = run(
            driver, mine, "ps -eo pid,args; cat /proc/[0-9]*/cmdline | tr '\\0' ' '; ls /proc"
        )
        assert code == 0, logs
        assert marker not in logs.stdout and "301.25" not in logs.stdout
        assert "pytest" not in logs.stdout and "supervise" not in logs.stdout
        pids = [int(n) for n in logs.stdout.split() if n.isdigit()]
        assert max(pids) < 100, pids  # its own pid namespace: small numbers, pid 1 is its init
        assert str(host.pid) not in logs.stdout.split()
        code, logs = run(driver, mine, f"kill -9 {host.pid}; sudo kill -9 {host.pid}")
        assert code != 0 and host.poll() is None
    finally:
        host.kill()
        host.wait()


def test_root_inside_is_not_root_outside(driver, make_sandbox):
    sandbox_id = make_sandbox()
    pid = start(driver, sandbox_id, "sudo sleep 300")
    deadline = time.monotonic() + 5
    owners: set[int] = set()
    while time.monotonic() < deadline:
        for host_pid in marked_pids(driver, sandbox_id):
            try:
                status = Path(f"/proc/{host_pid}/status").read_text()
            except OSError:
                continue
            if "sleep" in Path(f"/proc/{host_pid}/comm").read_text():
                owners.add(int(status.split("Uid:")[1].split()[1]))
        if owners:
            break
        time.sleep(0.05)
    assert owners == {driver.id_base}, owners  # uid 0 inside, an unprivileged uid outside
    code, logs = run(
        driver,
        sandbox_id,
        "sudo cat /proc/self/uid_map; sudo grep -E 'NoNewPrivs|Seccomp:' /proc/self/status",
    )
    assert logs.stdout.split()[:3] == ["0", str(driver.id_base), "65536"], logs
    assert "Seccomp:\t2" in logs.stdout  # the filter is on, for root too
    # no_new_privs holds for processes started as root; not for the default user's, so
    # that sudo (a setuid binary) works (docs/runtime.md).
    code, logs = run(driver, sandbox_id, "grep NoNewPrivs /proc/self/status", user="root")
    assert logs.stdout.split() == ["NoNewPrivs:", "1"], logs
    code, logs = run(driver, sandbox_id, "grep NoNewPrivs /proc/self/status")
    assert logs.stdout.split() == ["NoNewPrivs:", "0"], logs
    # Root inside still cannot load modules, make mounts or reach the kernel's keyring.
    code, logs = run(
        driver,
        sandbox_id,
        "sudo mount -t tmpfs none /mnt; sudo unshare -U true; "
        'sudo python -c "import ctypes; print(ctypes.CDLL(None).syscall(250, 0, 0, 0, 0))"',
    )
    assert logs.stdout.strip() == "-1", logs  # keyctl(250): refused by the seccomp filter
    assert "mount: /mnt: permission denied" in logs.stderr, logs
    assert "unshare failed: Operation not permitted" in logs.stderr, logs
    driver.kill_process(sandbox_id, pid)


def test_memory_limit_kills_with_137_and_an_oom_event(driver, make_sandbox):
    sandbox_id = make_sandbox(memory_mb=96)
    driver.take_events()
    code, logs = run(driver, sandbox_id, "python -c 'x = bytearray(400 * 2**20); print(len(x))'")
    assert code == 137 and logs.oom_killed, logs
    events = [e for e in driver.take_events() if e.sandbox_id == sandbox_id]
    assert [e.kind for e in events] == ["oom"] and "bytearray" in events[0].details["command"]
    # The sandbox lives on: only the greedy process was killed.
    assert run(driver, sandbox_id, "echo alive")[1].stdout == "alive\n"


def test_pids_limit_contains_a_fork_bomb(driver, make_sandbox):
    small = IsolatedDriver(driver.root, SUBNET, image_cache=IMAGE_CACHE, pids_limit=64)
    sandbox_id = make_sandbox()
    small.destroy(sandbox_id)
    small.create(CreateSpec(sandbox_id=sandbox_id))
    path = f"{small.cgroup_parent}/{sandbox_id}"
    start(small, sandbox_id, "timeout 5 bash -c 'f(){ f|f& };f'")
    peak = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        peak = max(peak, len(cgroups.pids(path)))
        time.sleep(0.05)
    assert 20 < peak <= 64, peak
    # The host still forks freely.
    assert subprocess.run(["true"]).returncode == 0


def test_open_files_are_limited_and_metrics_report_the_sandboxs_own_limits(driver, make_sandbox):
    sandbox_id = make_sandbox(vcpus=1, memory_mb=384, disk_mb=512)
    # Past the open-files limit a process gets EMFILE (24); it holds for root inside too.
    many = driver.open_files + 10
    opener = (
        f'python3 -c \'import os\ntry:\n    [os.open("/dev/null", 0) for _ in range({many})]\n'
        "except OSError as e:\n    print(e.errno)'"
    )
    code, logs = run(driver, sandbox_id, f"ulimit -n; {opener}; sudo {opener}")
    assert code == 0 and logs.stdout.split() == [str(driver.open_files), "24", "24"], logs
    sample = driver.metrics(sandbox_id)
    assert (sample.cpu_count, sample.mem_total_bytes, sample.disk_total_bytes) == (
        1,
        384 << 20,
        512 << 20,
    )
    assert 0 < sample.mem_used_bytes < sample.mem_total_bytes
    assert 0 < sample.disk_used_bytes < sample.disk_total_bytes


def test_disk_limit_gives_enospc_and_the_host_file_stays_small(driver, make_sandbox):
    sandbox_id = make_sandbox(disk_mb=64)
    code, logs = run(
        driver, sandbox_id, "dd if=/dev/zero of=/workspace/big bs=1M count=200; df -m /", timeout=60
    )
    assert "No space left on device" in logs.stderr, logs
    image = driver.root / sandbox_id / "disk.img"
    assert image.stat().st_size == 64 * 2**20
    assert image.stat().st_blocks * 512 <= 64 * 2**20
    metrics = driver.metrics(sandbox_id)
    assert metrics.disk_total_bytes == 64 * 2**20
    assert metrics.disk_used_bytes > 40 * 2**20
    # Deleting frees the space again (the disk is mounted with discard).
    code, logs = run(driver, sandbox_id, "rm /workspace/big && echo ok > /workspace/small")
    assert code == 0, logs


def test_host_services_are_unreachable_even_on_0_0_0_0(driver, make_sandbox, host_server):
    sandbox_id = make_sandbox()
    network = make_sandbox.runtime[sandbox_id]["network"]
    host_ips = {network["host_addr"], "127.0.0.1"}
    host_ips.update(
        line.split()[3].split("/")[0]
        for line in subprocess.run(
            ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True
        ).stdout.splitlines()
    )
    for ip in sorted(host_ips):
        assert _connect(driver, sandbox_id, ip, host_server) != "ok", ip
    # The way in (the preview gateway's path) still works.
    start(driver, sandbox_id, "python -m http.server 8080 --bind 0.0.0.0")
    assert wait_http(network["sandbox_addr"], 8080, "/")


def test_any_port_can_be_served_inside_and_only_inside(driver, make_sandbox):
    """Ports below 1024 too, by the default user (sshd on 22 needs it: docs/ssh.md); the
    host's own port 80 is not involved, the namespace is the sandbox's."""
    sandbox_id = make_sandbox()
    start(driver, sandbox_id, "python -m http.server 80 --bind 0.0.0.0")
    address = make_sandbox.runtime[sandbox_id]["network"]["sandbox_addr"]
    assert wait_http(address, 80, "/")


def test_another_sandbox_is_unreachable(driver, make_sandbox):
    first, second = make_sandbox(), make_sandbox()
    start(driver, second, "python -m http.server 8080 --bind 0.0.0.0")
    target = make_sandbox.runtime[second]["network"]["sandbox_addr"]
    assert wait_http(target, 8080, "/")  # from the host: fine
    assert _connect(driver, first, target, 8080) != "ok"
    assert _connect(driver, second, "127.0.0.1", 8080) == "ok"


def test_internet_on_and_off(driver, make_sandbox):
    online = make_sandbox()
    offline = make_sandbox(egress=EgressPolicy(internet=False))
    command = "pip download --no-deps --retries 0 --timeout 15 -d /tmp/dl six==1.16.0 && ls /tmp/dl"
    code, logs = run(driver, online, command, timeout=120)
    assert code == 0 and "six-1.16.0" in logs.stdout, logs
    started = time.monotonic()
    code, logs = run(driver, offline, command, timeout=120)
    assert code != 0 and "six-1.16.0" not in logs.stdout
    assert time.monotonic() - started < 90


@pytest.fixture
def outside_servers() -> Iterator[tuple[str, str]]:
    """Two HTTP servers in a network namespace made here, reachable from the host."""
    tag = hashlib.sha1(SUBNET.encode()).hexdigest()[:4]
    name, host_if, peer = f"egress-{tag}", f"eg{tag}h", f"eg{tag}p"
    third = int(tag, 16) % 250
    host_addr, ns_a, ns_b = f"198.18.{third}.1", f"198.18.{third}.2", f"198.18.{third}.3"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    script = (
        f"netns add {name}\n"
        f"link add {host_if} type veth peer name {peer} netns {name}\n"
        f"addr add {host_addr}/29 dev {host_if}\n"
        f"link set {host_if} up\n"
    )
    subprocess.run(["ip", "-b", "-"], input=script, text=True, check=True)
    inside = (
        f"link set {peer} up\nlink set lo up\naddr add {ns_a}/29 dev {peer}\n"
        f"addr add {ns_b}/29 dev {peer}\n"
    )
    subprocess.run(["ip", "-n", name, "-b", "-"], input=inside, text=True, check=True)
    server = subprocess.Popen(
        ["ip", "netns", "exec", name, "python3", "-m", "http.server", "8099", "--bind", "0.0.0.0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(ns_a, 8099, "/")
        yield ns_a, ns_b
    finally:
        server.kill()
        server.wait()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)


def test_allow_out_and_deny_out(driver, make_sandbox, outside_servers):
    allowed, denied = outside_servers
    only = make_sandbox(egress=EgressPolicy(internet=False, allow_out=(f"{allowed}/32",)))
    assert _connect(driver, only, allowed, 8099) == "ok"
    assert _connect(driver, only, denied, 8099) != "ok"
    most = make_sandbox(egress=EgressPolicy(internet=True, deny_out=(f"{denied}/32",)))
    assert _connect(driver, most, allowed, 8099) == "ok"
    assert _connect(driver, most, denied, 8099) != "ok"
    # allow_out wins over deny_out for the same address.
    both = make_sandbox(
        egress=EgressPolicy(internet=True, allow_out=(f"{denied}/32",), deny_out=("198.18.0.0/15",))
    )
    assert _connect(driver, both, denied, 8099) == "ok"
    assert _connect(driver, both, allowed, 8099) != "ok"


def _certificates(pem: bytes) -> set[str]:
    """The certificates of a PEM text, as their base64 bodies without whitespace."""
    return {
        re.sub(r"\s+", "", body)
        for body in re.findall(
            r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem.decode(), re.S
        )
    }


def test_the_hosts_extra_certificates_are_trusted_inside(driver, make_sandbox):
    """Companies run TLS-inspecting proxies: what this machine trusts beyond Debian's set
    (/usr/local/share/ca-certificates) is in the sandbox's trust store too."""
    extra = image._host_certificates()
    if not extra:
        pytest.skip("this machine trusts no certificate beyond Debian's set")
    sandbox_id = make_sandbox()
    with driver.files(sandbox_id).open_read("/etc/ssl/certs/ca-certificates.crt") as bundle:
        trusted = _certificates(bundle.read())
    for name, pem in extra.items():
        assert _certificates(pem) <= trusted, f"{name} is not trusted inside the sandbox"


def test_python_git_and_sudo_work_as_the_default_user(driver, make_sandbox):
    sandbox_id = make_sandbox()
    code, logs = run(
        driver,
        sandbox_id,
        "whoami; python -c 'import sys; print(sys.version_info[0])'; "
        "python -m venv /tmp/venv && /tmp/venv/bin/pip --version >/dev/null && echo venv; "
        "git init -q repo && cd repo && echo hi > a && git add a && git commit -qm first "
        "&& git log --format=%an -1; sudo -n whoami; hostname; test -w /workspace && echo w",
        timeout=60,
    )
    assert code == 0, logs
    assert logs.stdout.split() == [
        "user",
        "3",
        "venv",
        "Sandbox",
        "User",
        "root",
        sandbox_id.replace("_", "-").lower(),
        "w",
    ], logs


def test_volume_mounts_are_bound_in_and_read_only_is_enforced(driver, tmp_path):
    shared, readonly = tmp_path / "shared", tmp_path / "readonly"
    shared.mkdir()
    readonly.mkdir()
    (readonly / "data.txt").write_text("from the host")
    for place in (shared, readonly):  # owned by the sandbox's default user, like a volume's files
        os.chown(place, driver.id_base + 1000, driver.id_base + 1000)
    sandbox_id = f"sb_vol{os.getpid() % 10000}"
    driver.create(
        CreateSpec(sandbox_id=sandbox_id),
        mounts=[
            VolumeMount(shared, "/data"),
            VolumeMount(readonly, "/srv/ro", read_only=True),
        ],
    )
    try:
        code, logs = run(
            driver,
            sandbox_id,
            "echo hi > /data/out.txt && cat /srv/ro/data.txt; echo x > /srv/ro/new.txt; "
            "sudo touch /srv/ro/root.txt; sudo mount -o remount,rw /srv/ro",
        )
        assert (shared / "out.txt").read_text() == "hi\n"
        assert logs.stdout.startswith("from the host"), logs
        assert logs.stderr.count("Read-only file system") >= 2, logs
        assert sorted(p.name for p in readonly.iterdir()) == ["data.txt"]
        files = driver.files(sandbox_id)
        for refused in ("/srv/ro/api.txt", "/srv/ro/new-dir/api.txt"):
            with pytest.raises(RuntimeError_) as caught:
                files.write(refused, [b"x"], limit=10)
            assert caught.value.code == "volume_read_only", refused  # the client's code
        assert files.write("/data/api.txt", [b"x"], limit=10).size == 1
        assert (shared / "api.txt").read_bytes() == b"x"
    finally:
        driver.destroy(sandbox_id)
    assert (shared / "out.txt").exists()  # the volume outlives the sandbox


def test_vcpus_is_a_cpu_quota(driver, make_sandbox):
    """Two busy loops in a one-vCPU sandbox never get more than one CPU between them."""
    sandbox_id = make_sandbox(vcpus=1)
    path = f"{driver.cgroup_parent}/{sandbox_id}"
    for _ in range(2):
        start(driver, sandbox_id, "python -c 'while True: pass'")
    time.sleep(0.5)
    began, used = time.monotonic(), cgroups.cpu_seconds(path)
    time.sleep(2)
    share = (cgroups.cpu_seconds(path) - used) / (time.monotonic() - began)
    assert 0 < share <= 1.15, share
