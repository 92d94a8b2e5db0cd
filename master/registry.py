"""Which Python entry point implements which service, and importing them before any fork.

A service is started by calling ``run(ctx: cote.ipc.ServiceContext)`` in the forked child.
The master imports every entry point it will need *before* forking, so children start warm
(no imports after fork, pages shared after ``gc.freeze()``).

``executable`` in the config selects the implementation:

- ``imap-login``, ``auth``, ``auth -w`` ...: the built-in named by the first word (auth with
  ``-w`` is auth-worker, as in Dovecot);
- ``script /path/prog args``: cote's script service (runs the program per connection);
- ``/path/prog args`` (absolute): exec'd after fork, listeners from fd 3 (systemd style env).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Service name -> "module:function". Owners: login/auth/mailproc engineers implement these
# functions; a missing module means "not implemented yet" and the service is not started.
BUILTIN: dict[str, str] = {
    "imap-login": "cote.login.imap:run",
    "pop3-login": "cote.login.pop3:run",
    "managesieve-login": "cote.login.managesieve:run",
    "auth": "cote.auth.service:run",
    "auth-worker": "cote.auth.worker:run",
    "imap": "cote.mailproc.imap.service:run",
    "imap-hibernate": "cote.mailproc.imap.hibernate:run",
    "pop3": "cote.mailproc.pop3.service:run",
    "lmtp": "cote.mailproc.lmtp.service:run",
    "managesieve": "cote.mailproc.managesieve.service:run",
    "anvil": "cote.master.anvil:run",
    "log": "cote.master.logservice:run",
    "script": "cote.master.script:run",
}

EntryPoint = Callable[[Any], "int | None"]

# Modules the standard library imports lazily, on first use, that chrooted children (login
# processes in $base_dir/login, anvil in $base_dir/empty) could not import any more: the master
# imports them before forking. asyncio's run_in_executor needs concurrent.futures.thread,
# socket.getaddrinfo on a str host needs encodings.idna, ...
WARM_MODULES = (
    "asyncio", "concurrent.futures.thread", "encodings.idna", "encodings.ascii",
    "encodings.latin_1", "encodings.utf_8", "encodings.utf_16", "encodings.punycode", "ssl",
    "selectors", "subprocess", "json", "hmac", "hashlib", "base64", "secrets", "uuid",
    "ipaddress", "email.utils", "unicodedata", "zlib", "_strptime", "traceback",
    "linecache", "tokenize",
)


def warm_up() -> list[str]:
    """Import WARM_MODULES; returns the ones that could not be imported."""
    missing = []
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


@dataclass(frozen=True)
class Implementation:
    """What to run in the child: a Python entry point, or a program to exec."""

    kind: str                          # "python" | "exec"
    target: str                        # "module:function" or the program path
    func: EntryPoint | None = None
    # Optional ``prepare(config) -> dict``: run by the master (as root, before forking) at
    # start and on reload; the dict reaches the child as ``ctx.extra``. For what a service
    # must read before it loses its privileges or enters its chroot (TLS keys).
    prepare: Callable[[Any], dict[str, Any]] | None = None


class NotImplementedYet(Exception):
    """The service's implementation module does not exist (yet)."""


class ImplementationError(Exception):
    """The implementation exists but cannot be imported or is not callable."""


def builtin_name(executable: tuple[str, ...]) -> str:
    """The built-in service an ``executable`` setting names ("auth -w" -> "auth-worker")."""
    if not executable:
        return ""
    prog = executable[0].rsplit("/", 1)[-1] if not executable[0].startswith("/") else ""
    if prog == "auth" and "-w" in executable[1:]:
        return "auth-worker"
    return prog


def load_target(target: str) -> EntryPoint:
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # Only "this very module (or a parent) is missing" means not implemented; a missing
        # import *inside* an existing module is a real error.
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise NotImplementedYet(target) from None
        raise ImplementationError(f"{target}: {e}") from e
    except Exception as e:
        raise ImplementationError(f"{target}: import failed: {type(e).__name__}: {e}") from e
    func = getattr(module, func_name or "run", None)
    if func is None:
        raise NotImplementedYet(target)
    if not callable(func):
        raise ImplementationError(f"{target} is not callable")
    return func  # type: ignore[no-any-return]


def resolve(executable: tuple[str, ...]) -> Implementation:
    """The implementation for an ``executable`` setting (imports Python entry points now)."""
    if executable and executable[0].startswith("/"):
        return Implementation("exec", executable[0])
    name = builtin_name(executable)
    target = BUILTIN.get(name)
    if target is None:
        raise NotImplementedYet(f"executable {executable[0] if executable else '?'}")
    func = load_target(target)
    prepare = getattr(importlib.import_module(target.partition(":")[0]), "prepare", None)
    return Implementation("python", target, func, prepare if callable(prepare) else None)
