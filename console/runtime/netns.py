"""One network namespace per sandbox, joined to the host by a veth pair on a private /30.

Names carry a short instance tag (from RUNTIME_ROOT) so that several servers on one
machine never touch each other's namespaces, and veth names stay within the kernel's
15 characters. /30 networks are handed out under a lock from a table shared by every
instance on the machine (/run/nullspace), and never over an address already in use.

The namespace gets a default route through the host end of its veth only when its
egress policy lets anything out; what it may reach is decided by netpolicy.py.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SHARED_DIR = Path(os.environ.get("NULLSPACE_RUN_DIR", "/run/nullspace"))
NETNS_DIR = Path("/run/netns")
# A table entry whose host veth does not exist after this long is a leftover.
STALE_AFTER = 60.0


class NetworkError(Exception):
    pass


@dataclass(frozen=True)
class Network:
    netns: str
    host_if: str
    cidr: str  # the /30
    host_addr: str
    sandbox_addr: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


def available() -> bool:
    """Network namespaces can be made here (root, iproute2, /run writable)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None and os.access("/run", os.W_OK)


def _ip(
    *args: str, batch: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *args] + (["-b", "-"] if batch is not None else [])
    result = subprocess.run(cmd, input=batch, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def netns_prefix(tag: str) -> str:
    return f"ns-{tag}-"


def if_prefix(tag: str) -> str:
    return f"ns{tag}"


@contextmanager
def _table() -> Iterator[dict[str, Any]]:
    SHARED_DIR.mkdir(parents=True, exist_ok=True)
    with open(SHARED_DIR / "subnets.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = SHARED_DIR / "subnets.json"
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            table = {}
        yield table
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, indent=0))
        os.replace(tmp, path)


def _host_links() -> set[str]:
    return {link["ifname"] for link in json.loads(_ip("-j", "link", "show").stdout or "[]")}


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for link in json.loads(_ip("-j", "addr", "show").stdout or "[]"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet":
                used.append(ipaddress.ip_interface(f"{addr['local']}/{addr['prefixlen']}").network)
    return used


def create(
    tag: str, sandbox_id: str, subnet: str, root: str = "", *, default_route: bool = False
) -> Network:
    pool = ipaddress.IPv4Network(subnet)
    name = f"{netns_prefix(tag)}{sandbox_id}"
    with _table() as table:
        links = _host_links()
        now = time.time()
        for cidr, entry in list(table.items()):
            if entry["host_if"] not in links and now - entry["at"] > STALE_AFTER:
                del table[cidr]
        used = _used_networks()
        for index, net in enumerate(pool.subnets(new_prefix=30)):
            cidr = str(net)
            if cidr in table or any(net.overlaps(other) for other in used):
                continue
            host_if = f"{if_prefix(tag)}h{index:x}"
            table[cidr] = {
                "tag": tag,
                "sandbox": sandbox_id,
                "host_if": host_if,
                "root": root,
                "at": now,
            }
            break
        else:
            raise NetworkError(f"no free /30 left in RUNTIME_SUBNET {subnet}")
    hosts = list(net.hosts())
    network = Network(name, host_if, cidr, str(hosts[0]), str(hosts[1]))
    peer = f"{if_prefix(tag)}p{index:x}"
    try:
        _ip(
            batch=(
                f"netns add {name}\n"
                f"link add {host_if} type veth peer name {peer} netns {name}\n"
                f"addr add {network.host_addr}/30 dev {host_if}\n"
                f"link set {host_if} up\n"
            )
        )
        _ip(
            "-n",
            name,
            batch=(
                f"link set {peer} name eth0\n"
                f"addr add {network.sandbox_addr}/30 dev eth0\n"
                "link set eth0 up\n"
                "link set lo up\n"
                + (f"route add default via {network.host_addr}\n" if default_route else "")
            ),
        )
        # The namespace belongs to the host's user namespace, so root inside a sandbox
        # has no CAP_NET_BIND_SERVICE over it: let any port be bound in it (as Docker
        # does), for sshd on 22 (docs/ssh.md) and servers on 80.
        _ip("netns", "exec", name, "sh", "-c", f"echo 0 > {UNPRIVILEGED_PORT_START}")
    except NetworkError:
        delete(network.as_dict())
        raise
    return network


def delete(state: dict[str, Any]) -> None:
    """Remove the veth pair, the namespace and the table entry. Idempotent."""
    commands = ""
    if state.get("host_if"):
        commands += f"link del {state['host_if']}\n"
    if state.get("netns"):
        commands += f"netns del {state['netns']}\n"
    if commands:  # one `ip` for both; -force goes on past what is already gone
        _ip("-force", batch=commands, check=False)
    if state.get("cidr"):
        with _table() as table:
            if table.get(state["cidr"], {}).get("host_if") == state.get("host_if"):
                del table[state["cidr"]]


def netns_pids(name: str) -> list[int]:
    result = _ip("netns", "pids", name, check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def leftovers(tag: str) -> dict[str, dict[str, Any]]:
    """Namespaces, veths and table entries of this instance, by sandbox id."""
    found: dict[str, dict[str, Any]] = {}
    prefix = netns_prefix(tag)
    if NETNS_DIR.is_dir():
        for path in NETNS_DIR.iterdir():
            if path.name.startswith(prefix):
                found.setdefault(path.name[len(prefix) :], {})["netns"] = path.name
    with _table() as table:
        entries = {cidr: dict(e) for cidr, e in table.items() if e["tag"] == tag}
    for cidr, entry in entries.items():
        found.setdefault(entry["sandbox"], {}).update(cidr=cidr, host_if=entry["host_if"])
    claimed = {state.get("host_if") for state in found.values()}
    for link in _host_links():
        if link.startswith(if_prefix(tag)) and link not in claimed:
            _ip("link", "del", link, check=False)  # a veth whose table entry was lost
    return found


def counters(host_if: str) -> tuple[int | None, int | None]:
    """(bytes received by the sandbox, bytes sent by it), read from the host end."""
    base = Path("/sys/class/net") / host_if / "statistics"
    try:
        return int((base / "tx_bytes").read_text()), int((base / "rx_bytes").read_text())
    except OSError:
        return None, None
