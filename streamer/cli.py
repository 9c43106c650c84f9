"""`streamer run FILE` and `streamer validate FILE`.

Exit codes: 0 done, 1 the run finished but something failed (a source, a sink), 2 invalid config
(a model it names that no provider knows, or a file that is no model, included) or arguments, 130
interrupted twice. With `--log-format json` every line this writes to stderr is a JSON log record.
On a terminal, `run` shows a live progress display on stderr (streamer/console/), never with
`--quiet`, `--log-format json` or when stderr is not a terminal; `streamer status [URL]` prints the
same tables from a running daemon's /status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .errors import ConfigError, StreamerError

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .service.logs import configure_logging

    configure_logging(args.log_level, args.log_format)
    return args.command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description="Run computer-vision models on live video.")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one JSON object per line")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the pipeline a config file describes")
    run.add_argument("config", help="path to a TOML config file")
    run.add_argument("--quiet", action="store_true", help="no progress display on the terminal (logs and the summary still print)")
    run.set_defaults(command=_run)
    _add_status_command(commands)
    validate = commands.add_parser("validate", help="check a config file and print OK or the first error")
    validate.add_argument("config", help="path to a TOML config file")
    validate.set_defaults(command=_validate)
    cluster = commands.add_parser("cluster", help="a fleet of pipelines on Ray (docs/cluster.md)").add_subparsers(
        required=True, metavar="ACTION"
    )
    cluster_run = cluster.add_parser("run", help="spread the config's sources over [cluster] workers, moving them off lost ones")
    cluster_run.add_argument("config", help="path to a TOML config file with a [cluster] table")
    cluster_run.set_defaults(command=_cluster_run)
    _add_engine_commands(commands)
    return parser


def _add_status_command(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="the sources and sinks of a running daemon, from its /status")
    status.add_argument("url", nargs="?", help="the daemon's address (default: --config's [server], else http://127.0.0.1:9464)")
    status.add_argument("--config", help="take the address and token_env from this config's [server] table")
    status.add_argument("--token-env", metavar="NAME", help="the variable holding the admin token (default: the"
                        " config's token_env, else STREAMER_ADMIN_TOKEN)")
    status.add_argument("--json", action="store_true", help="print the status body as JSON")
    status.add_argument("--watch", type=float, nargs="?", const=1.0, metavar="SECONDS", help="redraw every SECONDS (1) until Ctrl-C")
    status.set_defaults(command=_status)


def _status(args: argparse.Namespace) -> int:
    from .console.remote import address_of, show_status

    try:
        url, token = address_of(args.url, args.config, args.token_env)
        show_status(url, token, as_json=args.json, watch_s=args.watch)
    except ConfigError as exc:
        return _tell_invalid(args, exc)
    except StreamerError as exc:
        return _tell_failed(args, exc)
    except KeyboardInterrupt:  # how --watch ends
        pass
    return EXIT_OK


def _add_engine_commands(commands: argparse._SubParsersAction) -> None:
    describe = commands.add_parser("describe", help="describe this machine or a model").add_subparsers(
        required=True, metavar="WHAT"
    )
    describe.add_parser("env", help="backends, GPUs and versions negotiation sees").set_defaults(command=_describe_env)
    model = describe.add_parser("model", help="a model's metadata, packages and the package that would load here")
    model.add_argument("model_id")
    model.add_argument("--package", help="describe this one package in detail")
    _add_load_flags(model)
    model.set_defaults(command=_describe_model)
    models = commands.add_parser("models", help="the model cache").add_subparsers(required=True, metavar="ACTION")
    pull = models.add_parser("pull", help="download the package that fits this machine into the cache")
    pull.add_argument("model_id")
    _add_load_flags(pull)
    pull.set_defaults(command=_models_pull)
    convert = models.add_parser("convert", help="convert a model's ONNX package to a PyTorch package (cached)")
    convert.add_argument("model_id", help="a model id, or a path to an ONNX file or model folder")
    convert.add_argument("--to", required=True, choices=["torch"], help="the backend to convert for")
    convert.add_argument("--format", default="torchscript", choices=["torchscript", "torch-export"])
    convert.add_argument("--out", help="also copy the package to this folder")
    convert.add_argument("--architecture", help="for ONNX files whose metadata does not say")
    for flag in ("--cache-dir", "--registry-url"):
        convert.add_argument(flag)
    convert.add_argument("--offline", action="store_true")
    convert.set_defaults(command=_models_convert)
    quantize = models.add_parser("quantize", help="write an INT8 local package, calibrated on a clip and checked")
    quantize.add_argument("model_id", help="a model id, or a path to an ONNX file or model folder")
    quantize.add_argument("--int8", action="store_true", required=True, help="ONNX Runtime static QDQ quantization")
    quantize.add_argument("--calibrate", required=True, metavar="CLIP", help="a video whose frames calibrate it")
    quantize.add_argument("--frames", type=int, default=16, help="calibration frames, spread over the clip")
    quantize.add_argument("--out", help="the model folder to write (default: the local models folder's, by id)")
    for flag in ("--architecture", "--cache-dir", "--registry-url"):
        quantize.add_argument(flag)
    quantize.add_argument("--offline", action="store_true")
    quantize.set_defaults(command=_models_quantize)
    listing = models.add_parser("list", help="list cached model packages")
    listing.add_argument("--cache-dir")
    listing.set_defaults(command=_models_list)
    serve = models.add_parser("serve", help="serve a local models folder as a read-only HTTP registry")
    serve.add_argument("folder", help="a models folder: <model id>/model.json and its package folders")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8470; 0: any free one)")
    serve.add_argument("--token", help="demand this bearer token (default: $STREAMER_REGISTRY_TOKEN, if set)")
    serve.set_defaults(command=_models_serve)


def _add_load_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["onnxruntime", "torch", "tensorrt"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--registry-url")


def _load_options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .engine.auto_model import make_options

    flags = {key: getattr(args, key) for key in ("backend", "device", "cache_dir", "offline", "registry_url")}
    return make_options(None, {key: value for key, value in flags.items() if value not in (None, False)})


def _tell(args: argparse.Namespace, message: str, level: int = logging.ERROR, **fields: object) -> None:
    """A line for the user on stderr: as it is, or with `--log-format json` a log record (one JSON
    object, `fields` in it), so that every line on stderr is JSON."""
    if args.log_format == "json":
        logging.getLogger("streamer").log(level, message, extra=fields)
    else:
        print(message, file=sys.stderr)


def _tell_invalid(args: argparse.Namespace, error: ConfigError) -> int:
    _tell(args, f"invalid: {error}", key_path=error.path, file=error.file)
    return EXIT_INVALID


def _tell_failed(args: argparse.Namespace, error: StreamerError) -> int:
    _tell(args, f"error: {error}")
    return EXIT_FAILED


def _engine_command(run):  # type: ignore[no-untyped-def]
    """Print what `run` returns; a StreamerError becomes a message and exit code 1."""

    def command(args: argparse.Namespace) -> int:
        try:
            print(run(args))
        except StreamerError as exc:
            return _tell_failed(args, exc)
        return EXIT_OK

    return command


@_engine_command
def _describe_env(args: argparse.Namespace) -> str:
    from .engine.environment import describe_compute_environment, render_environment

    return render_environment(describe_compute_environment())


@_engine_command
def _describe_model(args: argparse.Namespace) -> str:
    from .engine.describe import describe_model, describe_model_package

    if args.package:
        return str(describe_model_package(args.model_id, args.package, _load_options(args)))
    return str(describe_model(args.model_id, _load_options(args)))


@_engine_command
def _models_pull(args: argparse.Namespace) -> str:
    import anyio

    from .console.display import pull_progress, shows_progress
    from .engine.auto_model import pull

    with pull_progress(enabled=shows_progress(sys.stderr, log_format=args.log_format)):
        document, package, files = anyio.run(pull, args.model_id, _load_options(args))
    paths = "\n".join(f"  {path}" for path in files.values())
    return f"{document.model_id}: package {package.package_id} ({package.backend}, {package.quantization}) ready\n{paths}"


@_engine_command
def _models_convert(args: argparse.Namespace) -> str:
    import functools

    import anyio

    from .engine.auto_model import make_options
    from .engine.convert import convert_model

    flags = {key: getattr(args, key) for key in ("architecture", "cache_dir", "offline", "registry_url")}
    options = make_options(None, {key: value for key, value in flags.items() if value not in (None, False)})
    convert = functools.partial(convert_model, args.model_id, options, format=args.format, out_dir=args.out)
    folder = anyio.run(convert)
    return f"{args.model_id}: {args.format} package ready in {folder}\n  load it with backend=\"torch\" from that folder"


@_engine_command
def _models_quantize(args: argparse.Namespace) -> str:
    import functools

    import anyio

    from .engine.auto_model import make_options
    from .engine.quantize import quantize_model

    flags = {key: getattr(args, key) for key in ("architecture", "cache_dir", "offline", "registry_url")}
    options = make_options(None, {key: value for key, value in flags.items() if value not in (None, False)})
    quantize = functools.partial(quantize_model, args.model_id, args.calibrate, options, out_dir=args.out,
                                 frames=args.frames)
    return str(anyio.run(quantize))


@_engine_command
def _models_list(args: argparse.Namespace) -> str:
    from .engine.cache import ModelCache

    rows = [
        f"{document.model_id:<32} {package.package_id:<28} {package.backend:<12} {package.quantization:<5} {folder}"
        for document, package, folder in ModelCache(args.cache_dir).cached_packages()
    ]
    header = f"{'model':<32} {'package':<28} {'backend':<12} {'quant':<5} folder"
    return "\n".join([header, *rows]) if rows else "no models in the cache"


def _models_serve(args: argparse.Namespace) -> int:
    """Serve the folder until interrupted; the first line on stdout gives the URL clients use."""
    import functools

    import anyio

    from .engine.serve import serve_models_forever, token_from_environment

    token = args.token or token_from_environment()

    def ready(url: str, model_ids: list[str]) -> None:
        guard = "a bearer token is required" if token else "no token required"
        print(f"serving {len(model_ids)} models from {args.folder} at {url} ({guard})", flush=True)

    port = {} if args.port is None else {"port": args.port}
    serve = functools.partial(serve_models_forever, args.folder, host=args.host, token=token, ready=ready, **port)
    try:
        anyio.run(serve)
    except StreamerError as exc:
        return _tell_failed(args, exc)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    """The config as `run` would check it, its models resolved (nothing downloaded): OK, or exit 2."""
    try:
        _checked_config(args.config)
    except ConfigError as exc:
        return _tell_invalid(args, exc)
    except StreamerError as exc:  # a registry that does not answer: the config may be fine
        return _tell_failed(args, exc)
    print("OK")
    return EXIT_OK


def _checked_config(path: str):  # type: ignore[no-untyped-def]
    """The config at `path`, with every model it names resolved; ConfigError if it is invalid."""
    import anyio

    from .config import load_config
    from .pipeline.runner import resolve_models

    config = load_config(path)
    anyio.run(resolve_models, config, path)
    return config


def _run(args: argparse.Namespace) -> int:
    import anyio

    from .service.daemon import Interrupted, run_daemon

    try:
        config = _checked_config(args.config)
    except ConfigError as exc:
        return _tell_invalid(args, exc)
    except StreamerError as exc:
        return _tell_failed(args, exc)
    from .console.display import run_progress, shows_progress

    shown = shows_progress(sys.stderr, quiet=args.quiet, log_format=args.log_format)
    try:
        with run_progress(config.model.id, enabled=shown) as watch:
            summary = anyio.run(run_daemon, config, args.config, watch)
    except StreamerError as exc:
        return _tell_failed(args, exc)
    except (Interrupted, KeyboardInterrupt):
        _tell(args, "interrupted", logging.WARNING)
        return EXIT_INTERRUPTED
    print(summary.render())
    return EXIT_OK if summary.succeeded else EXIT_FAILED


def _cluster_run(args: argparse.Namespace) -> int:
    """`streamer cluster run FILE`: the fleet until SIGINT/SIGTERM (or every file job ended, without [server])."""
    import anyio

    from .cluster.run import check_fleet, render, run_cluster

    try:
        config = _checked_config(args.config)
        check_fleet(config, args.config)
    except ConfigError as exc:
        return _tell_invalid(args, exc)
    except StreamerError as exc:
        return _tell_failed(args, exc)
    try:
        coordinator = anyio.run(run_cluster, config)
    except StreamerError as exc:
        return _tell_failed(args, exc)
    except KeyboardInterrupt:
        _tell(args, "interrupted", logging.WARNING)
        return EXIT_INTERRUPTED
    print(render(coordinator))
    return EXIT_OK
