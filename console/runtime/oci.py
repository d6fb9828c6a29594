"""OCI runtime documents for crun: the sandbox's config.json and each process's process.json.

What a sandbox may do is decided here, in one place (docs/runtime.md):
namespaces (pid, mount, uts, ipc, user, cgroup, and the network namespace made by
netns.py), the id mapping, the capability bounding set, rlimits, no_new_privs,
the seccomp filter, masked /proc paths, and the cgroup limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ID_RANGE = 65536
# Docker's default set: enough for package managers, servers and sudo inside; nothing that
# reaches the kernel's global state (no SYS_ADMIN, SYS_MODULE, SYS_PTRACE, NET_ADMIN, ...).
CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
]
# Refused with EPERM: what a sandbox never needs and what reaches beyond it.
DENIED_SYSCALLS = [
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "open_by_handle_at",
    "name_to_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "stime",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "quotactl",
    "quotactl_fd",
    "perf_event_open",
    "fanotify_init",
    "userfaultfd",
    "nfsservctl",
    "vm86",
    "vm86old",
    "kcmp",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
# File systems mounted only inside the sandbox (below, in "mounts"): the host-side file
# store must not write beneath them (console/runtime/filestore.py, `kernel_mounts`).
KERNEL_MOUNTS = ("/proc", "/dev")
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    vcpus: int
    pids: int
    open_files: int


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...] = ()


def seccomp() -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }


def process(
    argv: list[str],
    *,
    user: User,
    cwd: str,
    env: dict[str, str],
    limits: Limits,
    terminal: bool = False,
    oom_score_adj: int = 500,
) -> dict[str, Any]:
    """One process's settings. no_new_privs is set for root (nothing to gain by exec)
    and left off for other users, so that sudo works (docs/runtime.md). Processes get a
    raised OOM score, so that over memory_mb the kernel kills them, not the sandbox's init
    (lowering the init's score would need CAP_SYS_RESOURCE)."""
    caps = CAPABILITIES if user.uid == 0 else []
    return {
        "terminal": terminal,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.groups)},
        "args": argv,
        "env": [f"{key}={value}" for key, value in env.items()],
        "cwd": cwd,
        "capabilities": {
            "bounding": CAPABILITIES,
            "effective": caps,
            "permitted": caps,
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": [
            {"type": "RLIMIT_NOFILE", "hard": limits.open_files, "soft": limits.open_files},
            {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
        ],
        "noNewPrivileges": user.uid == 0,
        "oomScoreAdj": oom_score_adj,
    }


def config(
    *,
    rootfs: str,
    hostname: str,
    id_base: int,
    netns_path: str | None,
    cgroups_path: str,
    limits: Limits,
    init: list[str],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    root = User("root", 0, 0, "/root")
    namespaces: list[dict[str, str]] = [
        {"type": kind} for kind in ("pid", "ipc", "uts", "mount", "user", "cgroup")
    ]
    # Without a network namespace of our own the sandbox gets an empty one (loopback only).
    namespaces.append({"type": "network", **({"path": netns_path} if netns_path else {})})
    period = 100_000
    return {
        "ociVersion": "1.0.2",
        "process": process(
            init,
            user=root,
            cwd="/",
            env={"PATH": DEFAULT_PATH},
            limits=limits,
            terminal=False,
            oom_score_adj=0,
        ),
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            *mounts,
        ],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": id_base, "size": ID_RANGE}],
            "gidMappings": [{"containerID": 0, "hostID": id_base, "size": ID_RANGE}],
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "resources": {
                "memory": {
                    "limit": limits.memory_mb * 1024 * 1024,
                    "swap": limits.memory_mb * 1024 * 1024,
                },
                "cpu": {"quota": limits.vcpus * period, "period": period},
                "pids": {"limit": limits.pids},
            },
            "seccomp": seccomp(),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }
