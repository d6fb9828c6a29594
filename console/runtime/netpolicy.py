"""Egress policy of sandboxes, enforced with nftables on the host end of their veths.

One table per driver instance (`inet nullspace_<tag>`), so parallel servers on one
machine never touch each other's rules:

- input: a sandbox reaches nothing on the host (console, databases, even services bound
  to 0.0.0.0 or to the veth's own address); only replies to connections the host opened
  (the preview gateway's path in) come back.
- forward: never to another sandbox of any instance (their veths are all `ns*`), never
  new connections into a sandbox from outside; then the sandbox's own chain decides:
  allow_out CIDRs accepted, deny_out CIDRs dropped, then internet_access decides the rest.
- postrouting: what leaves is masqueraded (NAT) behind the host's address.

`parse` turns the API's `internet_access` and `network` into a Policy and refuses keys
and values it cannot enforce.
"""

from __future__ import annotations

import fcntl
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from console.runtime.base import EgressPolicy, RuntimeError_
from console.runtime.netns import SHARED_DIR, if_prefix

# Keys of `network` that are about the preview gateway, not egress: accepted as they are.
GATEWAY_KEYS = {"allow_public_traffic", "mask_request_host"}
EGRESS_KEYS = {"allow_out", "deny_out", "egress"}
FORWARD_SYSCTL = Path("/proc/sys/net/ipv4/ip_forward")


class PolicyRefused(RuntimeError_):
    code = "invalid_request"


def any_egress(policy: EgressPolicy) -> bool:
    return policy.internet or bool(policy.allow_out)


def as_dict(policy: EgressPolicy) -> dict[str, Any]:
    return {
        "internet_access": policy.internet,
        "allow_out": list(policy.allow_out),
        "deny_out": list(policy.deny_out),
    }


def from_dict(data: dict[str, Any]) -> EgressPolicy:
    return EgressPolicy(
        bool(data.get("internet_access", True)),
        tuple(data.get("allow_out") or ()),
        tuple(data.get("deny_out") or ()),
    )


def _cidrs(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 256:
        raise PolicyRefused(f"network.{name} must be a list of at most 256 IPv4 CIDRs")
    found = []
    for item in value:
        try:
            net = ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            raise PolicyRefused(f"network.{name}: {item!r} is not an IPv4 CIDR") from None
        if net.version != 4:
            raise PolicyRefused(f"network.{name}: {item!r} is IPv6; sandboxes have IPv4 only")
        found.append(str(net))
    return tuple(dict.fromkeys(found))


def parse(internet_access: Any, network: dict[str, Any] | None) -> EgressPolicy:
    """The policy the API asked for; anything we cannot enforce is refused, never ignored."""
    network = network or {}
    if not isinstance(network, dict):
        raise PolicyRefused("network must be a JSON object")
    unknown = sorted(set(network) - GATEWAY_KEYS - EGRESS_KEYS)
    if unknown:
        raise PolicyRefused(
            f"unknown network key(s): {', '.join(unknown)}; this server understands "
            f"{', '.join(sorted(GATEWAY_KEYS | EGRESS_KEYS))}"
        )
    if not isinstance(internet_access, bool):
        raise PolicyRefused("internet_access must be true or false")
    internet = internet_access
    allow = _cidrs(network.get("allow_out"), "allow_out")
    deny = _cidrs(network.get("deny_out"), "deny_out")
    egress = network.get("egress")
    if egress is not None:
        if not isinstance(egress, dict):
            raise PolicyRefused("network.egress must be an object")
        extra = sorted(set(egress) - {"mode", "allow_cidrs", "deny_cidrs"})
        if extra:
            raise PolicyRefused(
                f"network.egress key(s) {', '.join(extra)} cannot be enforced here "
                "(rate limits are not supported)"
            )
        mode = egress.get("mode", "custom")
        if mode not in ("allow_all", "deny_all", "custom"):
            raise PolicyRefused("network.egress.mode must be allow_all, deny_all or custom")
        if mode == "deny_all":
            internet = False
        elif mode == "allow_all" and not internet_access:
            raise PolicyRefused("network.egress.mode allow_all contradicts internet_access=false")
        allow += _cidrs(egress.get("allow_cidrs"), "egress.allow_cidrs")
        deny += _cidrs(egress.get("deny_cidrs"), "egress.deny_cidrs")
    return EgressPolicy(internet, tuple(dict.fromkeys(allow)), tuple(dict.fromkeys(deny)))


def available() -> str | None:
    if shutil.which("nft") is None:
        return "nftables is not installed (apt-get install nftables)"
    return None


def table_name(tag: str) -> str:
    return f"nullspace_{tag}"


def _nft(script: str) -> None:
    result = subprocess.run(
        ["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        raise RuntimeError_(f"nft: {result.stderr.strip()[-500:]}")


@contextmanager
def _locked(tag: str) -> Iterator[None]:
    SHARED_DIR.mkdir(parents=True, exist_ok=True)
    with open(SHARED_DIR / f"nft-{tag}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _chain(host_if: str) -> str:
    return f"sb_{host_if}"


_ensured: set[str] = set()  # tables this process made or found (drop_table forgets them)


def ensure_table(tag: str) -> None:
    """The instance's table and base chains (made once; live sandboxes' rules are kept)."""
    if tag in _ensured:
        return
    table = table_name(tag)
    ours = f'"{if_prefix(tag)}h*"'
    with _locked(tag):
        probe = subprocess.run(
            ["nft", "list", "table", "inet", table], capture_output=True, text=True
        )
        if probe.returncode == 0:
            _ensured.add(tag)
            return
        _nft(
            f"""table inet {table} {{
  map egress {{ type ifname : verdict; }}
  chain input {{
    type filter hook input priority filter - 5; policy accept;
    iifname {ours} ct state established,related accept
    iifname {ours} drop
  }}
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
    oifname {ours} ct state established,related accept
    oifname {ours} drop
    iifname {ours} oifname "ns*" drop
    iifname {ours} meta nfproto ipv6 drop
    iifname {ours} iifname vmap @egress
    iifname {ours} drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat - 5; policy accept;
    iifname {ours} oifname != "ns*" masquerade
  }}
}}
"""
        )
        _ensured.add(tag)


def apply(tag: str, host_if: str, policy: EgressPolicy) -> None:
    """Install (or replace) one sandbox's egress chain and its entry in the map."""
    if any_egress(policy):
        enable_forwarding()
    ensure_table(tag)
    table = table_name(tag)
    chain = _chain(host_if)
    rules = []
    if policy.allow_out:
        rules.append(f"ip daddr {{ {', '.join(policy.allow_out)} }} accept")
    if policy.deny_out:
        rules.append(f"ip daddr {{ {', '.join(policy.deny_out)} }} drop")
    rules.append("accept" if policy.internet else "drop")
    body = "\n".join(f"add rule inet {table} {chain} {rule}" for rule in rules)
    script = (
        f"add chain inet {table} {chain}\n"
        f"flush chain inet {table} {chain}\n"
        f"{body}\n"
        f"add element inet {table} egress {{ {host_if} : jump {chain} }}\n"
    )
    try:
        with _locked(tag):
            _nft(script)
    except RuntimeError_:
        _ensured.discard(tag)  # another process dropped the table: make it again
        ensure_table(tag)
        with _locked(tag):
            _nft(script)


def remove(tag: str, host_if: str) -> None:
    table = table_name(tag)
    chain = _chain(host_if)
    lines = (
        f"delete element inet {table} egress {{ {host_if} }}",
        f"delete chain inet {table} {chain}",
    )
    with _locked(tag):
        both = subprocess.run(
            ["nft", "-f", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True
        )
        if both.returncode != 0:  # one of them is gone already: the other on its own
            for line in lines:
                subprocess.run(["nft", line], capture_output=True, text=True, timeout=30)


def drop_table(tag: str) -> None:
    _ensured.discard(tag)
    with _locked(tag):
        subprocess.run(
            ["nft", "delete", "table", "inet", table_name(tag)], capture_output=True, timeout=30
        )
        (SHARED_DIR / f"nft-{tag}.lock").unlink(missing_ok=True)


def chains(tag: str) -> list[str]:
    """The per-sandbox chains present (for reconcile and the "nothing left" tests)."""
    result = subprocess.run(
        ["nft", "list", "chains", "inet"], capture_output=True, text=True, timeout=30
    )
    table = f"table inet {table_name(tag)}"
    found, inside = [], False
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.startswith("table "):
            inside = line.rstrip(" {") == table
        elif inside and line.startswith("chain sb_"):
            found.append(line.split()[1])
    return found


def enable_forwarding() -> None:
    """NAT needs IPv4 forwarding; the forward chain above keeps it to our sandboxes' traffic."""
    try:
        if FORWARD_SYSCTL.read_text().strip() != "1":
            FORWARD_SYSCTL.write_text("1\n")
    except OSError as exc:
        raise RuntimeError_(f"cannot enable IPv4 forwarding for sandbox NAT: {exc}") from exc


def nameservers() -> list[str]:
    """The host's resolvers a sandbox can reach through NAT (loopback ones cannot be)."""
    found: list[str] = []
    for source in (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf")):
        try:
            lines = source.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    addr = ipaddress.ip_address(parts[1])
                except ValueError:
                    continue
                if addr.version == 4 and not addr.is_loopback and parts[1] not in found:
                    found.append(parts[1])
        if found:
            break
    return found
