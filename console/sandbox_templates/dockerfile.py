"""Dockerfiles as build plans: parsed by the `dockerfile` package (BuildKit's own parser,
so heredocs, line continuations and flags read exactly as `docker build` reads them),
then each instruction becomes the steps of console/sandbox_templates/plan.py.

Supported: FROM (a Debian base or a template; one stage), RUN (heredocs,
`--mount=type=secret`), ENV, ARG, WORKDIR, COPY/ADD from the context, USER, EXPOSE,
LABEL, CMD/ENTRYPOINT (the start command). Anything else is refused with its line.
"""

from __future__ import annotations

import shlex
from typing import Any

import dockerfile as buildkit_parser  # type: ignore[import-not-found]

from console.errors import DomainError
from console.models import Team
from console.sandbox_templates import plan as plans

MAX_DOCKERFILE = 256 * 1024
SUPPORTED = ("FROM", "RUN", "ENV", "ARG", "WORKDIR", "COPY", "ADD", "USER", "EXPOSE", "LABEL")
START = ("CMD", "ENTRYPOINT")


def refused(line: int, message: str) -> DomainError:
    return DomainError(
        "dockerfile_not_supported",
        f"Dockerfile line {line}: {message}",
        details={"line": line},
    )


def _substitute(text: str, args: dict[str, str]) -> str:
    """$NAME and ${NAME} from ARG/ENV values seen so far (what BuildKit expands)."""
    for name in sorted(args, key=len, reverse=True):
        text = text.replace("${" + name + "}", args[name]).replace("$" + name, args[name])
    return text


def _pairs(values: tuple[str, ...], line: int, what: str) -> list[tuple[str, str]]:
    if len(values) % 2:
        raise refused(line, f"{what} needs KEY=VALUE pairs")
    out = []
    for key, value in zip(values[::2], values[1::2], strict=True):
        try:
            parts = shlex.split(value) if value else [""]
        except ValueError:
            raise refused(line, f"{what} {key}: unbalanced quotes") from None
        out.append((key, " ".join(parts)))
    return out


def _flags(flags: tuple[str, ...], line: int, allowed: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for flag in flags:
        name, _, value = flag.lstrip("-").partition("=")
        if name not in allowed:
            raise refused(line, f"--{name} is not supported here")
        out[name] = value
    return out


def plan(team: Team, text: str) -> plans.Plan:
    if len(text.encode()) > MAX_DOCKERFILE:
        raise plans.invalid(f"the Dockerfile is larger than {MAX_DOCKERFILE} bytes")
    try:
        commands = buildkit_parser.parse_string(text)
    except buildkit_parser.GoParseError as exc:
        raise DomainError("dockerfile_invalid", f"Dockerfile does not parse: {exc}") from None
    result = plans.Plan(source_type="dockerfile")
    args: dict[str, str] = {}
    seen_from = False
    labels: dict[str, str] = {}
    exposed: list[str] = []
    starts: dict[str, str] = {}
    for command in commands:
        line = command.start_line
        name = command.cmd.upper()
        # RUN is left to its shell (ARG and ENV values are in its environment); the other
        # instructions see $NAME expanded, as BuildKit does.
        values = (
            command.value if name == "RUN" else tuple(_substitute(v, args) for v in command.value)
        )
        if name == "ARG":
            for item in values:
                key, _, default = item.partition("=")
                args[key] = default.strip('"')
                result.build_envs[key] = args[key]
            continue
        if name == "FROM":
            if seen_from:
                raise refused(line, "multi-stage builds (a second FROM) are not supported")
            _flags(command.flags, line, ())
            if len(values) != 1:
                raise refused(line, "FROM takes one image (no AS stages)")
            plans.apply_base(result, team, values[0])
            seen_from = True
            continue
        if not seen_from:
            raise refused(line, f"{name} before FROM")
        if name == "RUN":
            result.steps.append(_run(command, values, line))
        elif name == "ENV":
            envs = dict(_pairs(values, line, "ENV"))
            args.update(envs)
            result.steps.append(plans.Step("env", {"envs": envs}, line))
            result.runtime.setdefault("envs", {}).update(envs)
        elif name == "WORKDIR":
            result.steps.append(plans.step("workdir", {"path": values[0]}, line))
            result.runtime["workdir"] = values[0]
        elif name in ("COPY", "ADD"):
            flags = _flags(command.flags, line, ("chmod", "chown"))
            if len(values) < 2:
                raise refused(line, f"{name} needs a source and a destination")
            sources = list(values[:-1])
            if any("://" in s for s in sources):
                raise refused(line, f"{name} from a URL is not supported (COPY from the context)")
            copy_args: dict[str, Any] = {"sources": sources, "dst": values[-1]}
            if flags.get("chmod"):
                copy_args["mode"] = flags["chmod"]
            if flags.get("chown"):
                copy_args["user"] = flags["chown"].split(":", 1)[0]
            result.steps.append(plans.step("copy", copy_args, line))
        elif name == "USER":
            user = values[0].split(":", 1)[0]
            result.steps.append(plans.step("user", {"user": user}, line))
            result.runtime["user"] = user
        elif name == "EXPOSE":
            exposed += [v.split("/")[0] + "/" + (v.split("/") + ["tcp"])[1] for v in values]
        elif name == "LABEL":
            labels.update(_pairs(values, line, "LABEL"))
        elif name in START:
            # The last of each wins; ENTRYPOINT then CMD's words, as `docker run` runs them.
            starts[name] = shlex.join(values) if command.json else " ".join(values)
        else:
            raise refused(
                line, f"{name} is not supported (supported: {', '.join(SUPPORTED + START)})"
            )
    if not seen_from:
        raise plans.invalid("the Dockerfile has no FROM")
    if starts:
        result.runtime["start_cmd"] = " ".join(
            starts[name] for name in ("ENTRYPOINT", "CMD") if name in starts
        )
    result.oci_metadata = {"labels": labels, "exposed_ports": exposed, "volumes": []}
    return result


def _run(command: Any, values: tuple[str, ...], line: int) -> plans.Step:
    secrets: list[str] = []
    for flag in command.flags:
        name, _, value = flag.lstrip("-").partition("=")
        if name != "mount":
            raise refused(line, f"RUN --{name} is not supported")
        options = dict(part.partition("=")[::2] for part in value.split(","))
        if options.get("type") != "secret":
            raise refused(line, "RUN --mount supports only type=secret")
        secret_id = options.get("id") or options.get("target", "").rsplit("/", 1)[-1]
        if options.get("target") and options["target"] != f"/run/secrets/{secret_id}":
            raise refused(line, "secret mounts are at /run/secrets/<id> (no other target)")
        secrets.append(secret_id)
    step_args: dict[str, Any] = {}
    if command.heredocs:
        if len(command.heredocs) != 1:
            raise refused(line, "RUN takes one heredoc")
        doc = command.heredocs[0]
        head = " ".join(values).replace("<<-", "<<").split("<<", 1)[0].strip()
        step_args["command"] = head or "/bin/sh"
        step_args["heredoc"] = doc.content
    else:
        step_args["command"] = shlex.join(values) if command.json else " ".join(values)
    if secrets:
        step_args["secrets"] = secrets
    return plans.step("run", step_args, line)
