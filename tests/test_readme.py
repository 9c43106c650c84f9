"""The README's commands are the ones CI and users run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = ROOT.joinpath("README.md").read_text()
    ci_commands = [line for line in ROOT.joinpath(".ci", "run").read_text().splitlines() if "pytest" in line]

    assert len(ci_commands) == 1
    assert f"\n{ci_commands[0]}\n" in readme


def test_readme_quickstart_names_the_example_config_that_exists():
    readme = ROOT.joinpath("README.md").read_text()

    assert "streamer run examples/quickstart.toml" in readme
    assert ROOT.joinpath("examples", "quickstart.toml").is_file()
