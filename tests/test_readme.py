"""The README's commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from streamer.config import schema
from streamer.config.loader import load_config

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



def test_readme_tracking_section_names_the_zones_example_and_it_is_a_valid_config():
    readme = ROOT.joinpath("README.md").read_text()

    assert "streamer run examples/zones.toml" in readme
    stages = load_config(ROOT / "examples" / "zones.toml").stages
    assert [type(stage) for stage in stages] == [
        schema.AnonymizeStageConfig,
        schema.TrackStageConfig,
        schema.ZonesStageConfig,
        schema.PresenceStageConfig,
    ]


def test_readme_tracking_section_toml_is_a_valid_config_given_a_source():
    readme = ROOT.joinpath("README.md").read_text()
    section = readme[readme.index("## Tracking, zones and events") :]
    snippet = re.search(r"```toml\n(.*?)```", section, re.DOTALL)[1]

    config = load_config(msgspec.toml.decode(f'[[sources]]\ntype = "file"\npath = "door.mp4"\n{snippet}'.encode()))

    assert [sink.kinds for sink in config.sinks] == [["events"], ["events"]]
