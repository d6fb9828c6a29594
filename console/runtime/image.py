"""The builtin images: Debian minbase root filesystems, built once and cached.

`base` is what every sandbox runs on by default; the other builtin images (VARIANTS)
are `base` plus more Debian packages and a set-up script of their own (the desktop,
the code interpreter). Each is named after its variant and its recipe's digest.

Built with mmdebstrap from Debian's archive the first time a sandbox needs it, in a
cache directory outside DATA_DIR (RUNTIME_IMAGE_CACHE), so that every data directory
and every test run on the machine shares one copy. A build holds a lock file, so two
servers (or two test sessions) starting together build it once.

The cache key is a digest of everything that shapes the image (suite, package list,
set-up script, the id range it is shifted to, the host's trusted certificates); a
change makes a new image beside the old one. Files are owned by the sandbox id range
(root inside = `id_base` on the host), so that a sandbox's user namespace maps them
to their owners inside and to unprivileged ids outside (docs/runtime.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from console.runtime.base import RuntimeError_

log = logging.getLogger(__name__)

PACKAGES = (
    "bash",
    "coreutils",
    "procps",
    "iproute2",
    "curl",
    "ca-certificates",
    "python3",
    "python-is-python3",
    "python3-pip",
    "python3-venv",
    "git",
    "sudo",
    "tini",  # the sandbox's pid 1: reaps orphans
    # SSH access (docs/ssh.md): sshd is started on demand, trusting only the server's CA.
    "openssh-server",
    "rsync",
)
DEFAULT_USER = "user"
DEFAULT_UID = 1000
# Run inside the new root (chroot) after the packages are in; bump RECIPE_VERSION on edits.
RECIPE_VERSION = 2
SETUP_SCRIPT = f"""set -e
useradd --create-home --uid {DEFAULT_UID} --user-group --shell /bin/bash {DEFAULT_USER}
echo '{DEFAULT_USER} ALL=(ALL:ALL) NOPASSWD:ALL' > /etc/sudoers.d/{DEFAULT_USER}
chmod 0440 /etc/sudoers.d/{DEFAULT_USER}
# sshd refuses a locked account ("!") even for certificates: no password, but not locked.
usermod -p '*' {DEFAULT_USER}
usermod -p '*' root
# Host keys made at install time would be one key for every sandbox; each sandbox gets
# its own when SSH access is first asked for (docs/ssh.md).
rm -f /etc/ssh/ssh_host_*
mkdir -p /workspace
chown {DEFAULT_UID}:{DEFAULT_UID} /workspace
git config --system user.name 'Sandbox User'
git config --system user.email 'user@sandbox.invalid'
git config --system init.defaultBranch main
git config --system --add safe.directory '*'
# A sandbox is disposable: let pip install into the system Python like everywhere else.
rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
update-ca-certificates >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


# Quiet first runs of the browser; openbox's menu would only get in the way of clicks.
DESKTOP_SCRIPT = """
mkdir -p /usr/lib/firefox-esr/distribution
cat > /usr/lib/firefox-esr/distribution/policies.json <<'JSON'
{"policies": {"DisableAppUpdate": true, "DisableTelemetry": true,
 "DontCheckDefaultBrowser": true, "OverrideFirstRunPage": "",
 "OverridePostUpdatePage": "", "DisableProfileImport": true}}
JSON
mkdir -p -m 1777 /tmp/.X11-unix
mkdir -p /home/user/Desktop /home/user/.config/openbox
chown -R user:user /home/user/Desktop /home/user/.config
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
"""


@dataclass(frozen=True)
class Variant:
    """A builtin image: the base packages plus `packages`, then `script` in the chroot."""

    packages: tuple[str, ...] = ()
    script: str = ""


# Builtin images by name; a builtin template of the same name runs on it (docs/runtime.md).
VARIANTS: dict[str, Variant] = {
    "base": Variant(),
    # The code interpreter's Jupyter kernel and the libraries its users reach for first
    # (docs/code-interpreter.md). The client names this template and gives it 2 GB.
    "code-interpreter": Variant(
        packages=(
            "python3-ipykernel",
            "python3-matplotlib",
            "python3-numpy",
            "python3-pandas",
            # Satisfies matplotlib's font tools without scipy, whose Debian package
            # pulls a C++ compiler and Boost (about 650 MB; `pip install scipy` works).
            "python3-munkres",
        ),
    ),
    # An X desktop (docs/desktop.md): a virtual screen, a window manager, a browser, input
    # and clipboard tools, a VNC server with a WebSocket bridge for the live view, and ffmpeg
    # for screenshots and recordings. The server starts them per sandbox (console/desktop/).
    "desktop": Variant(
        packages=(
            "xvfb",
            "openbox",
            "firefox-esr",
            "mousepad",  # a small text editor: what clients' desktop tests type into
            "xdotool",
            "xclip",
            "x11-utils",  # xprop, xwininfo: window classes, pids, the active window
            "x11-apps",  # xwd: a screenshot without ffmpeg's start-up cost
            "x11vnc",
            "python3-websockify",
            "ffmpeg",
            "fonts-dejavu-core",
        ),
        script=DESKTOP_SCRIPT,
    ),
}

# Debian suites an image can be built from (the suite is part of the recipe, so each has
# its own cached image), with the Python 3 each ships: python:<v> templates map to these.
SUITES: dict[str, str] = {"bookworm": "3.11", "trixie": "3.13"}
STABLE = "trixie"  # what Debian calls `stable` today (Debian 13, since August 2025)

HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA_DIR = "usr/local/share/ca-certificates/host"


@dataclass(frozen=True)
class Image:
    name: str
    rootfs: Path
    id_base: int


def tools_missing() -> list[str]:
    return [tool for tool in ("mmdebstrap",) if shutil.which(tool) is None]


def _host_certificates() -> dict[str, bytes]:
    """PEM certificates this machine trusts beyond Debian's set (a TLS-inspecting proxy's)."""
    found: dict[str, bytes] = {}
    if HOST_CA_DIR.is_dir():
        for path in sorted(HOST_CA_DIR.rglob("*.crt")):
            try:
                found[path.name] = path.read_bytes()
            except OSError:
                continue
    return found


def _pem_blocks(data: bytes) -> set[bytes]:
    end = b"-----END CERTIFICATE-----"
    return {block.strip() + b"\n" + end for block in data.split(end) if b"BEGIN" in block}


def variant(name: str) -> Variant:
    found = VARIANTS.get(name)
    if found is None:
        raise RuntimeError_(f"no builtin image {name!r}", code="template_not_found")
    return found


def recipe(
    suite: str,
    mirror: str,
    id_base: int,
    name: str = "base",
    components: tuple[str, ...] = ("main",),
) -> dict[str, object]:
    extra = variant(name)
    certs = _host_certificates()
    try:
        bundle = HOST_CA_BUNDLE.read_bytes()
    except OSError:
        bundle = b""
    return {
        "version": RECIPE_VERSION,
        "suite": suite,
        "mirror": mirror,
        "packages": list(PACKAGES),
        "script": SETUP_SCRIPT,
        "id_base": id_base,
        "certs": hashlib.sha256(b"".join(sorted(certs.values())) + bundle).hexdigest(),
        # Only other components (an Ubuntu mirror's universe) change the key.
        **({"components": list(components)} if components != ("main",) else {}),
        # Only the other variants carry these keys, so the base image keeps its digest.
        **(
            {"variant": name, "extra": list(extra.packages), "extra_script": extra.script}
            if name != "base"
            else {}
        ),
    }


def _key(spec: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def cached(
    cache_dir: Path, suite: str, mirror: str, id_base: int, variant_name: str = "base"
) -> Image | None:
    name = f"{variant_name}-{_key(recipe(suite, mirror, id_base, variant_name))}"
    rootfs = cache_dir / "images" / name / "rootfs"
    return Image(name, rootfs, id_base) if rootfs.is_dir() else None


def ensure_image(
    cache_dir: Path,
    suite: str,
    mirror: str,
    id_base: int,
    variant_name: str = "base",
    components: tuple[str, ...] = ("main",),
) -> Image:
    """The cached builtin image, building it first if it is not there (under a lock)."""
    spec = recipe(suite, mirror, id_base, variant_name, components)
    name = f"{variant_name}-{_key(spec)}"
    images = cache_dir / "images"
    final = images / name
    if (final / "rootfs").is_dir():
        return Image(name, final / "rootfs", id_base)
    images.mkdir(parents=True, exist_ok=True)
    with open(images / f"{name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "rootfs").is_dir():
            _build(final, spec, suite, mirror, id_base, variant(variant_name), components)
    return Image(name, final / "rootfs", id_base)


def _build(
    final: Path,
    spec: dict[str, object],
    suite: str,
    mirror: str,
    id_base: int,
    extra: Variant,
    components: tuple[str, ...] = ("main",),
) -> None:
    missing = tools_missing()
    if missing:
        raise RuntimeError_(
            f"cannot build the base image: {', '.join(missing)} is not installed "
            "(apt-get install mmdebstrap)",
            code="runtime_unavailable",
        )
    work = final.with_name(f".{final.name}.{os.getpid()}.build")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    started = time.monotonic()
    log.info("building the sandbox image %s (once; cached in %s)", final.name, final.parent)
    try:
        result = subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--quiet",
                f"--components={','.join(components)}",
                f"--include={','.join(PACKAGES + extra.packages)}",
                suite,
                str(rootfs),
                mirror,
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if result.returncode != 0:
            raise RuntimeError_(
                f"building the base image failed: {result.stderr.strip()[-2000:]}",
                code="runtime_unavailable",
            )
        _add_host_certificates(rootfs)
        script = subprocess.run(
            ["chroot", str(rootfs), "/bin/sh", "-c", SETUP_SCRIPT + extra.script],
            capture_output=True,
            text=True,
            timeout=600,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )
        if script.returncode != 0:
            raise RuntimeError_(
                f"setting up the base image failed: {script.stderr.strip()[-2000:]}",
                code="runtime_unavailable",
            )
        shift_ownership(rootfs, id_base)
        seconds = round(time.monotonic() - started, 1)
        (work / "image.json").write_text(json.dumps({**spec, "build_seconds": seconds}))
        os.replace(work, final)
        log.info("image %s built in %.1f s", final.name, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _add_host_certificates(rootfs: Path) -> None:
    """Copy in the host's own CAs and any host-trusted CA the image's bundle lacks."""
    target = rootfs / IMAGE_CA_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name, data in _host_certificates().items():
        (target / name).write_bytes(data)
    try:
        host = _pem_blocks(HOST_CA_BUNDLE.read_bytes())
        image = _pem_blocks((rootfs / "etc/ssl/certs/ca-certificates.crt").read_bytes())
    except OSError:
        return
    for index, block in enumerate(sorted(host - image)):
        (target / f"host-extra-{index}.crt").write_bytes(block + b"\n")


def shift_ownership(rootfs: Path, id_base: int) -> None:
    """Add id_base to every owner and group; keep setuid/setgid bits (chown clears them)."""
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            os.lchown(path, st.st_uid + id_base, st.st_gid + id_base)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o6000:
                os.chmod(path, stat.S_IMODE(st.st_mode))
    st = os.lstat(rootfs)
    os.chown(rootfs, st.st_uid + id_base, st.st_gid + id_base)
