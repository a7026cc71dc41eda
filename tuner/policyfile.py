"""Reading a policy file as hostile input, and checking what its values name on this host.

The file: a regular file of at most MAX_BYTES, opened without blocking (a FIFO or a device
never hangs the check), whose YAML nests at most MAX_DEPTH deep and expands, aliases
included, to at most MAX_NODES nodes (a "billion laughs" of 1 kB is refused before it is
built). The values: the journal's path must be able to hold a file; the metrics address
must be one this host can listen on.
"""

from __future__ import annotations

import os
import socket
import stat
import urllib.request
from pathlib import Path

import yaml

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 10_000
MAX_SCALAR = 4096


class UnsafeYaml(ValueError):
    """The YAML is well-formed but too deep, too large once aliases expand, or recursive."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line


def read_policy_text(path: Path) -> str:
    """The file's text; OSError/ValueError say why it cannot be a policy."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ValueError("it is a directory, not a policy file")
        if not stat.S_ISREG(mode):
            raise ValueError("not a regular file (a device, pipe or socket); give a YAML file")
        data = b""
        while len(data) <= MAX_BYTES and (chunk := os.read(fd, MAX_BYTES + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES // 1024} kB; a policy is a few kB")
    return data.decode("utf-8")


def check_yaml_shape(text: str, loader: type[yaml.SafeLoader]) -> None:
    """Walk the YAML's events (no tree is built) and raise UnsafeYaml at the first excess."""
    sizes: dict[str, int] = {}  # anchor → nodes it expands to, once its node is complete
    stack: list[tuple[str | None, int]] = []  # open collections: (anchor, nodes so far)
    total = 0
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1 if event.start_mark else 1
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                raise UnsafeYaml(line, f"alias *{event.anchor} refers to itself or to nothing")
            count = sizes[event.anchor]
        elif isinstance(event, yaml.ScalarEvent):
            if len(event.value) > MAX_SCALAR:
                raise UnsafeYaml(line, f"a value of {len(event.value)} characters (at most "
                                       f"{MAX_SCALAR})")  # fmt: skip
            count = 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append((event.anchor, 1))
            if len(stack) > MAX_DEPTH:
                raise UnsafeYaml(line, f"nested more than {MAX_DEPTH} levels deep")
            total += 1
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, count = stack.pop()
            if anchor:
                sizes[anchor] = count
            total -= 1  # counted at its start already
        else:
            continue
        total += count
        if stack:
            anchor, so_far = stack[-1]
            stack[-1] = (anchor, so_far + count)
        if total > MAX_NODES:
            raise UnsafeYaml(
                line,
                f"expands to more than {MAX_NODES} values (YAML aliases repeat what they "
                "name); write the policy out plainly",
            )


def not_a_file_path(path: Path) -> str | None:
    """Why `path` cannot be (or become) a regular file; None when it can."""
    try:
        mode: int | None = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # which parent is the problem is found below
    except OSError as exc:
        return f"cannot look at {str(path)!r}: {exc.strerror}"
    if mode is not None and stat.S_ISDIR(mode):
        example = str(path / "journal.jsonl")
        return f"{str(path)!r} is a directory; name a file in it, e.g. {example!r}"
    if mode is not None and not stat.S_ISREG(mode):
        return f"{str(path)!r} is not a regular file (a device, pipe or socket)"
    for parent in path.parents:
        try:
            parent_mode = parent.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # created with the first record
        except OSError as exc:
            return f"cannot look at {str(parent)!r}: {exc.strerror}"
        if not stat.S_ISDIR(parent_mode):
            return f"{str(parent)!r} is not a directory"
        break
    return None


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:8187', '[::1]:8187' or ':8187' → (host, port); ValueError when malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{listen!r} is not HOST:PORT (e.g. 127.0.0.1:8187 or [::1]:8187)")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    return host, int(port)


def listen_problem(listen: str, *, port_too: bool) -> str | None:
    """Why the metrics server could not listen on `listen`, or None if it could: the host
    must be an address of this host; with `port_too`, the port must also be free — unless
    a pg-tuner already answers there (the running daemon a changed policy is checked for)."""
    host, port = parse_listen(listen)
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as exc:
        return f"cannot resolve {host!r}: {exc}"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address[0], 0))
        except OSError as exc:
            return f"cannot listen on {host}: {exc.strerror} (not an address of this host?)"
    if not port_too or port == 0:
        return None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if _is_pg_tuner(host, port):
                return None
            return f"cannot listen on {listen}: {exc.strerror}"
    return None


def _is_pg_tuner(host: str, port: int) -> bool:
    """Whether a pg-tuner's metrics server answers at host:port."""
    where = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{where}:{port}/healthz", timeout=2) as reply:
            server = str(reply.headers.get("Server", ""))
    except urllib.error.HTTPError as exc:  # 503 while unhealthy: still an answer
        server = str(exc.headers.get("Server", ""))
    except (OSError, ValueError):
        return False
    return server.startswith("pg-tuner")
