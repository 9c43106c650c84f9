"""The fault proxy's console: one command a line, as typed into `python -m streamer.testing.proxy`.

    stall                         silence every connection until `clear`
    freeze SECONDS                silence every connection for SECONDS, then go on
    cut [REFUSE_S]                reset every connection; reset new ones for REFUSE_S (default 0)
    throttle BYTES_PER_S          cap each direction of each connection
    latency SECONDS               hold each chunk SECONDS before forwarding it
    corrupt FRACTION [SEED] [to_client|to_server|both]
    clear                         a clean pipe again
    stats                         counters so far
    quit                          stop the proxy (end of input does too)

Every command is answered with one line: `ok ...` or `error: ...`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict
from typing import IO, Any, Callable

from .proxy import FaultProxy

HELP = __doc__.split("\n\n")[1]


class CommandError(ValueError):
    """A console line that is not a command, or a command with bad arguments."""


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CommandError(f"{name} must be a number, not {text!r}") from None


def _corrupt(proxy: FaultProxy, fraction: str, seed: str = "0", direction: str = "to_client") -> str:
    proxy.corrupt(_number(fraction, "fraction"), seed=int(_number(seed, "seed")), direction=direction)  # type: ignore[arg-type]
    return f"flipping {fraction} of the bytes {direction}"


def _stats(proxy: FaultProxy) -> str:
    counters = {**asdict(proxy.stats), "open": proxy.open_connections}
    return " ".join(f"{name}={value}" for name, value in counters.items())


COMMANDS: dict[str, Callable[..., str]] = {
    "stall": lambda proxy: (proxy.stall(), "stalled until clear")[1],
    "freeze": lambda proxy, seconds: (proxy.freeze(_number(seconds, "seconds")), f"frozen for {seconds} s")[1],
    "cut": lambda proxy, refuse_s="0": f"cut {proxy.cut(_number(refuse_s, 'refuse_s'))} connections",
    "throttle": lambda proxy, rate: (proxy.throttle(_number(rate, "bytes_per_s")), f"at most {rate} bytes/s")[1],
    "latency": lambda proxy, seconds: (proxy.latency(_number(seconds, "seconds")), f"{seconds} s per chunk")[1],
    "corrupt": _corrupt,
    "clear": lambda proxy: (proxy.clear(), "clean pipe")[1],
    "stats": _stats,
    "help": lambda proxy: HELP,
}


def execute(proxy: FaultProxy, line: str) -> str:
    """Apply one command line to the proxy; the answer line (never raises for a bad command)."""
    name, *arguments = line.split()
    command = COMMANDS.get(name.lower())
    if command is None:
        return f"error: unknown command {name!r} (try help)"
    try:
        return f"ok {command(proxy, *arguments)}"
    except TypeError:
        return f"error: wrong arguments for {name!r} (try help)"
    except ValueError as error:
        return f"error: {error}"


async def run_console(proxy: FaultProxy, lines: IO[str], out: IO[str]) -> int:
    """Serve until `quit` or the end of `lines`, answering each command on `out`."""
    async with proxy:
        _say(out, f"listening on {proxy.listen[0]}:{proxy.port} -> {proxy.upstream[0]}:{proxy.upstream[1]}")
        async for line in _lines_of(lines):
            if line.strip().lower() in ("quit", "exit"):
                break
            if line.strip():
                _say(out, execute(proxy, line))
    return 0


def _say(out: IO[str], line: str) -> None:
    out.write(line + "\n")
    out.flush()


async def _lines_of(lines: IO[str]) -> Any:
    """The lines of a blocking file, read in a daemon thread (so a blocked read never holds up the exit)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=16)

    def read() -> None:
        for line in iter(lines.readline, ""):
            asyncio.run_coroutine_threadsafe(queue.put(line), loop).result()
        asyncio.run_coroutine_threadsafe(queue.put(""), loop).result()

    threading.Thread(target=read, name="fault-proxy-console", daemon=True).start()
    while line := await queue.get():
        yield line
