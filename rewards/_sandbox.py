"""Sandbox bootstrap: `python -I -B _sandbox.py SPEC_JSON PROGRAM`. Runs in the child only.

Order matters: steps that need root (a private network namespace, dropping to `nobody`)
come first, imports the program may need come before the drop (after it, `nobody` may be
unable to read the interpreter's library, e.g. a Python under /root), and the process
limit comes last. Every limit is the kernel's, not Python's: code that calls libc through
ctypes meets the same walls.
"""

import ctypes
import importlib
import json
import os
import resource
import sys

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_NOBODY = 65534
# What HumanEval-style solutions and tests import; anything else may be unreadable to `nobody`.
_PRELOAD = (
    "abc array bisect cmath collections collections.abc copy dataclasses datetime decimal enum "
    "fractions functools hashlib heapq io itertools json math numbers operator pathlib random re socket "
    "statistics struct textwrap threading "
    "string sys time typing unicodedata encodings.idna numpy"
).split()


def _private_network() -> bool:
    """Move into a new network namespace: only a loopback device, and it is down."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) == 0:
        return True
    return libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0  # unprivileged user namespaces


def _set_limits(spec: dict) -> None:
    cpu = int(spec["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    memory = int(spec["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    output = int(spec["file_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))  # also caps stdout/stderr files
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def _drop_root() -> None:
    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # absent, or too big for the memory limit: the program may do without
            pass
    os.setgroups([])
    os.setgid(_NOBODY)
    os.setuid(_NOBODY)  # root ignores RLIMIT_NPROC; nobody does not


def _block_sockets() -> None:
    """Fallback when no namespace could be made: refuse sockets at the Python level."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("network access is disabled in the sandbox")

    socket.socket = refuse  # type: ignore[misc,assignment]
    socket.create_connection = refuse  # type: ignore[assignment]


def main() -> None:
    spec, program = json.loads(sys.argv[1]), sys.argv[2]
    isolated = _private_network()
    _set_limits(spec)
    if os.geteuid() == 0:
        _drop_root()
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no fork, no threads: not even one
    if not isolated:
        _block_sockets()
    with open(program) as f:
        source = f.read()
    sys.argv = [program]
    exec(compile(source, program, "exec"), {"__name__": "__main__", "__file__": program})


if __name__ == "__main__":
    main()
