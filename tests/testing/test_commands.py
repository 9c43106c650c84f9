"""The fault proxy's console, as a user runs it: `python -m streamer.testing.proxy`, commands on stdin."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from streamer.testing import FaultProxy
from streamer.testing.commands import execute
from tests.testing.echo import running_echo_server


async def test_execute_when_given_each_command_applies_it_and_says_ok():
    async with running_echo_server() as echo, FaultProxy(echo.port) as proxy:
        answers = [execute(proxy, line) for line in ("throttle 5000", "latency 0.1", "corrupt 0.01 3 both")]
        assert all(answer.startswith("ok ") for answer in answers)
        assert (proxy.faults.bytes_per_s, proxy.faults.delay_s, proxy.faults.corruption.direction) == (5000, 0.1, "both")
        assert execute(proxy, "freeze 5").startswith("ok") and not proxy.faults.flowing.is_set()
        assert execute(proxy, "clear") == "ok clean pipe" and proxy.faults.flowing.is_set()
        assert execute(proxy, "stats").startswith("ok connections=0 refused=0")


@pytest.mark.parametrize(
    ("line", "problem"),
    [("explode", "unknown command"), ("throttle", "wrong arguments"), ("throttle fast", "must be a number"),
     ("latency -1", "must not be negative"), ("corrupt 0.1 0 sideways", "direction must be one of")],
)
async def test_execute_when_a_command_is_wrong_answers_an_error_and_changes_nothing(line, problem):
    async with running_echo_server() as echo, FaultProxy(echo.port) as proxy:
        answer = execute(proxy, line)
        assert answer.startswith("error: ") and problem in answer
        assert proxy.faults.bytes_per_s is None and proxy.faults.delay_s == 0 and proxy.faults.corruption is None


def run_cli(*arguments: str, commands: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "streamer.testing.proxy", *arguments]
    return subprocess.run(command, input=commands, capture_output=True, text=True, timeout=30)


def test_cli_when_run_listens_answers_each_command_and_exits_at_the_end_of_input():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_cli("--upstream", "127.0.0.1:9", "--listen", f"127.0.0.1:{port}", commands="stall\nfreeze 1\nbogus\nclear\n")

    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[0] == f"listening on 127.0.0.1:{port} -> 127.0.0.1:9"
    assert [line.split()[0] for line in lines[1:]] == ["ok", "ok", "error:", "ok"]


def test_cli_when_asked_to_listen_off_loopback_exits_2_saying_why():
    done = run_cli("--upstream", "127.0.0.1:9", "--listen", "0.0.0.0:8554", commands="")

    assert done.returncode == 2 and "loopback only" in done.stderr
