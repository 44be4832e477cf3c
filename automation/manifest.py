"""What a job may run: the manifest, its schema, its canonical bytes and their hash.

A manifest is JSON checked against ``SCHEMA`` (documented in ``docs/automation.md``); every
problem is reported at once, keyed by where it is (``steps/1/argv``), so a caller fixes them all in
one go. The approval binds the SHA-256 of the manifest's canonical JSON (keys sorted, no spaces,
UTF-8): the runner recomputes it before running and refuses any other bytes.
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from jsonschema import Draft202012Validator

MAX_STEPS = 50
MAX_STEP_TIMEOUT = 3600
MAX_RETRIES = 5
DEFAULT_TIMEOUT = 60
SHORT_HASH = 12

# Names a step's environment may not set: the runner's own (PATH decides which executable a name
# means), the dynamic loader's, and anything that looks like a credential of the project.
RESERVED_ENV = re.compile(
    r"^(PATH|HOME|TMPDIR|LD_.*|PYTHON(PATH|HOME|STARTUP)|DYLD_.*)$"
    r"|(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|API_KEY|DATABASE_URL|REDIS_URL)",
    re.IGNORECASE,
)
# The settings whose values are the project's secrets: no step may be handed one.
SECRET_SETTINGS = ("SECRET_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET")

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Claimdesk job manifest",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "steps"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "work_item": {
            "type": "object",
            "description": "A (story, todolist) the runner holds a lease on while the job runs.",
            "additionalProperties": False,
            "required": ["story", "todolist"],
            "properties": {
                "story": {"type": "string", "minLength": 1, "maxLength": 200},
                "todolist": {"type": "string", "minLength": 1, "maxLength": 200},
            },
        },
        "concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "description": "Jobs of this manifest name running at once, at most (default 1).",
        },
        "steps": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_STEPS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "argv"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                    "argv": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 200,
                        "items": {"type": "string", "maxLength": 4096},
                    },
                    "timeout": {"type": "integer", "minimum": 1, "maximum": MAX_STEP_TIMEOUT},
                    "retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES},
                    "allow_fail": {"type": "boolean"},
                    "env": {
                        "type": "object",
                        "maxProperties": 50,
                        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                        "additionalProperties": {"type": "string", "maxLength": 4096},
                    },
                    "cwd": {"type": "string", "minLength": 1, "maxLength": 500},
                },
            },
        },
    },
}

VALIDATOR = Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class Step:
    """One step with its defaults filled in, as the runner runs it."""

    id: str
    argv: list[str]
    timeout: int = DEFAULT_TIMEOUT
    retries: int = 0
    allow_fail: bool = False
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "Step":
        return cls(
            id=raw["id"],
            argv=list(raw["argv"]),
            timeout=raw.get("timeout", DEFAULT_TIMEOUT),
            retries=raw.get("retries", 0),
            allow_fail=raw.get("allow_fail", False),
            env=dict(raw.get("env", {})),
            cwd=raw.get("cwd", ""),
        )

    def inputs(self) -> dict[str, Any]:
        """Everything that decides what the step does: part of its idempotency key."""
        return {
            "argv": self.argv,
            "timeout": self.timeout,
            "retries": self.retries,
            "allow_fail": self.allow_fail,
            "env": self.env,
            "cwd": self.cwd,
        }


def canonical(manifest: dict[str, Any]) -> bytes:
    """The manifest's canonical JSON: keys sorted, no insignificant spaces, UTF-8."""
    return json.dumps(
        manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sha256(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(manifest)).hexdigest()


def short(digest: str) -> str:
    """The short form of a hash shown to approvers (and enough to tell two manifests apart)."""
    return digest[:SHORT_HASH]


def idempotency_key(job_id: object, step: Step) -> str:
    """The key of one step of one job: the same inputs of the same job give the same key."""
    data = {"job": str(job_id), "step": step.id, "inputs": step.inputs()}
    return hashlib.sha256(canonical(data)).hexdigest()


def steps(manifest: dict[str, Any]) -> list[Step]:
    return [Step.of(raw) for raw in manifest["steps"]]


def _where(path: Any) -> str:
    return "/".join(str(part) for part in path) or "manifest"


def problems(manifest: Any) -> dict[str, str]:
    """Every problem with ``manifest``, keyed by where it is; empty when it is valid.

    The schema's errors come first; the rules a schema cannot say (unique step ids, a ``cwd``
    inside the job's directory, no reserved or secret environment) only for a manifest whose
    shape is right.
    """
    found: dict[str, list[str]] = {}
    for error in VALIDATOR.iter_errors(manifest):
        found.setdefault(_where(error.absolute_path), []).append(error.message)
    if not found:
        _rules(manifest, found)
    return {where: "; ".join(messages) for where, messages in found.items()}


def _rules(manifest: dict[str, Any], found: dict[str, list[str]]) -> None:
    secrets = {value for name in SECRET_SETTINGS if (value := getattr(settings, name, ""))}
    seen: set[str] = set()
    for index, raw in enumerate(manifest["steps"]):
        where = f"steps/{index}"
        if raw["id"] in seen:
            found.setdefault(f"{where}/id", []).append(f"step id {raw['id']!r} is used twice")
        seen.add(raw["id"])
        cwd = raw.get("cwd")
        if cwd is not None and not inside(cwd):
            found.setdefault(f"{where}/cwd", []).append(
                "must be a relative path inside the job's working directory"
            )
        for name, value in raw.get("env", {}).items():
            if RESERVED_ENV.search(name):
                found.setdefault(f"{where}/env/{name}", []).append(
                    "is set by the runner or looks like a secret; a step may not set it"
                )
            elif any(secret in value for secret in secrets):
                found.setdefault(f"{where}/env/{name}", []).append("holds a project secret")


def inside(cwd: str) -> bool:
    """Whether ``cwd`` names a directory inside the job's own one (relative, no ``..``)."""
    path = PurePosixPath(cwd)
    return not path.is_absolute() and ".." not in path.parts and "\x00" not in cwd


def outside_allowlist(manifest: dict[str, Any]) -> dict[str, str]:
    """The steps whose executable ``AUTOMATION_COMMAND_ALLOWLIST`` does not list, by where."""
    allowed = set(settings.AUTOMATION_COMMAND_ALLOWLIST)
    return {
        f"steps/{index}/argv/0": f"{step.argv[0]!r} is not on AUTOMATION_COMMAND_ALLOWLIST"
        for index, step in enumerate(steps(manifest))
        if not allowed_executable(step.argv[0], allowed)
    }


def allowed_executable(executable: str, allowed: set[str]) -> bool:
    """A bare name listed by name, or an absolute path listed as such; nothing relative."""
    if os.sep in executable:
        return os.path.isabs(executable) and executable in allowed
    return executable in allowed
