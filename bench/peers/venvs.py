"""The peers' own virtual environments, under bench/.venvs/<name>, built once and reused.

Ultralytics and Roboflow `inference` pull large dependency trees, CUDA builds of PyTorch among them,
so each gets a venv of its own, never streamer's. PyTorch comes first, as the CPU wheel 2.13.0 (from
the find-links folder, /opt/wheels here), and a constraints file holds it there, so no later package
can swap it for a CUDA build. torchvision is pinned to 0.28.0, the release built for torch 2.13: on
PyPI it exists only as a CUDA build, whose compiled ops do not load against CPU torch (the runners
then give the peer a stand-in module, see torchvision_standin.py). A venv counts as ready once
`.bench-ready` (the versions installed) is written; anything less is rebuilt from scratch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

VENVS = Path(__file__).resolve().parent.parent / ".venvs"
FIND_LINKS = Path("/opt/wheels")  # where the CPU torch wheel lies on this workplace's machines
TORCH = "torch==2.13.0"
TORCHVISION = "torchvision==0.28.0"  # the release for torch 2.13
READY = ".bench-ready"
STEP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Recipe:
    """What to pip install, step by step; `report` lists the distributions whose versions are recorded."""

    steps: tuple[tuple[str, ...], ...]
    report: tuple[str, ...]


RECIPES = {
    "ultralytics": Recipe(
        steps=((TORCH,), ("ultralytics==8.4.190", TORCHVISION, "onnxruntime", "onnx")),
        report=("ultralytics", "torch", "torchvision", "onnxruntime", "opencv-python", "numpy"),
    ),
    "inference": Recipe(
        steps=((TORCH,), ("inference-cpu==1.8.3", TORCHVISION)),
        report=("inference-cpu", "inference-models", "torch", "torchvision", "onnxruntime", "opencv-python", "numpy"),
    ),
}


@dataclass(frozen=True)
class Venv:
    """A ready venv (`python` set), or one that could not be built (`error` set, short)."""

    name: str
    python: Path | None
    versions: dict[str, str]
    error: str | None = None


def ensure(name: str, reinstall: bool = False) -> Venv:
    """The venv for peer `name`, built if missing (or if `reinstall`); never raises for a failed install."""
    folder = VENVS / name
    if reinstall or not (folder / READY).exists():
        error = build(folder, RECIPES[name])
        if error:
            return Venv(name, None, {}, error)
    versions = json.loads((folder / READY).read_text())
    return Venv(name, folder / "bin" / "python", versions)


def build(folder: Path, recipe: Recipe) -> str | None:
    """Create the venv and install the recipe; returns a one-line reason on failure."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log = folder / "install.log"
    error = _run([sys.executable, "-m", "venv", str(folder)], log, "create the venv")
    (folder / "constraints.txt").write_text(f"{TORCH}\n{TORCHVISION}\n")
    for number, packages in enumerate(recipe.steps, 1):
        if error:
            return error
        say(f"{folder.name}: pip install {' '.join(packages)} (step {number}/{len(recipe.steps)}; log: {log})")
        error = _run(pip_install(folder, packages), log, f"pip install {' '.join(packages)}")
    if error:
        return error
    (folder / READY).write_text(json.dumps(installed_versions(folder, recipe.report)))
    return None


def pip_install(folder: Path, packages: tuple[str, ...]) -> list[str]:
    command = [str(folder / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    command += ["-c", str(folder / "constraints.txt")]
    if FIND_LINKS.is_dir():
        command += ["--find-links", str(FIND_LINKS)]
    return [*command, *packages]


def installed_versions(folder: Path, names: tuple[str, ...]) -> dict[str, str]:
    script = "import importlib.metadata as m, json, sys\n"
    script += "def v(n):\n    try: return m.version(n)\n    except m.PackageNotFoundError: return None\n"
    script += "print(json.dumps({n: v(n) for n in sys.argv[1:] if v(n)}))"
    output = subprocess.run([str(folder / "bin" / "python"), "-c", script, *names], capture_output=True, text=True)
    return json.loads(output.stdout or "{}")


def _run(command: list[str], log: Path, what: str) -> str | None:
    """Run `command` appending its output to `log`; None on success, else the reason in one line."""
    started = time.monotonic()
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        try:
            done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"{what}: no result after {STEP_TIMEOUT_S} s"
    say(f"  {what}: {'ok' if done.returncode == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return None if done.returncode == 0 else f"{what}: {last_error(log)}"


def last_error(log: Path) -> str:
    """pip's last `ERROR:` line (or the log's last line), shortened."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    chosen = (errors or lines or ["no output"])[-1]
    return chosen[:200]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
