"""`streamer run FILE` and `streamer validate FILE`.

Exit codes: 0 done, 1 the run finished but something failed (a source, a sink), 2 invalid config
or arguments, 130 interrupted twice.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Sequence

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description="Run computer-vision models on live video.")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the pipeline a config file describes")
    run.add_argument("config", help="path to a TOML config file")
    run.set_defaults(command=_run)
    validate = commands.add_parser("validate", help="check a config file and print OK or the first error")
    validate.add_argument("config", help="path to a TOML config file")
    validate.set_defaults(command=_validate)
    return parser


def _validate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .errors import ConfigError

    try:
        load_config(args.config)
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print("OK")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    import anyio

    from .config import load_config
    from .errors import ConfigError, StreamerError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        summary = anyio.run(_run_until_done_or_signalled, config)
    except StreamerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary.render())
    return EXIT_FAILED if summary.failed else EXIT_OK


async def _run_until_done_or_signalled(config):  # type: ignore[no-untyped-def]
    import anyio

    from .pipeline import open

    async with open(config) as stream:
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, stream)
            summary = await stream.wait()
            group.cancel_scope.cancel()
    return summary


async def _stop_on_signal(stream) -> None:  # type: ignore[no-untyped-def]
    """First SIGINT/SIGTERM: stop reading and flush the sinks. Second: give up at once."""
    import anyio

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stream.stopping:
                raise KeyboardInterrupt
            print(f"{signal.Signals(signum).name}: stopping, flushing sinks", file=sys.stderr)
            stream.stop()
