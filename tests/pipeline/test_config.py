from pathlib import Path

import pytest

from pipeline.config import ScanConfig, load_scan_config, parse_override
from pipeline.errors import ConfigError


def test_the_shipped_yaml_states_every_default_of_the_code():
    cfg = load_scan_config()
    assert cfg == ScanConfig()
    assert cfg.decode.sample_fps == 12.0 and cfg.detect.model_selection == 1 and cfg.aggregate.method == "mean"


def test_signal_thresholds_are_validated_with_their_names():
    with pytest.raises(ConfigError, match="closed_ratio"):
        load_scan_config(overrides=["signals.blinks.closed_ratio=0.95"])
    with pytest.raises(ConfigError, match="typo"):
        load_scan_config(overrides=["signals.swap.typo=1"])
    assert load_scan_config(overrides=["decision.swap=review"]).decision.swap == "review"


def test_overrides_are_parsed_as_yaml():
    cfg = load_scan_config(overrides=["decode.sample_fps=10", "aggregate.method=topk", "input.extensions=[MP4, .mov]"])
    assert cfg.decode.sample_fps == 10.0 and cfg.aggregate.method == "topk"
    assert cfg.input.extensions == ["mp4", "mov"]


@pytest.mark.parametrize(
    "override, match",
    [
        ("decode.sample_fps=-1", "decode.sample_fps"),
        ("decode.no_such_key=1", "no_such_key"),
        ("aggregate.method=max", "aggregate.method"),
        ("nonsense", "section.key=value"),
    ],
)
def test_bad_values_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_scan_config(overrides=[override])


def test_unreadable_and_invalid_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_scan_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("decode: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scan_config(bad)


def test_parse_override():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("note=data: synthetic, seed 0") == (["note"], "data: synthetic, seed 0")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_override("a=[1, 2")
