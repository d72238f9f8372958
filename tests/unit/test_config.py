from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig, apply_overrides, load_config
from flywheel.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_loads_and_matches_the_model_defaults() -> None:
    config = load_config(REPO / "configs" / "churn.yaml")
    assert config.model_dump() == FlywheelConfig().model_dump()


def test_missing_file_falls_back_to_defaults_when_no_path_given() -> None:
    assert load_config().data.generator.customers == 20_000


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  generator:\n    custmers: 5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'data\.generator\.custmers'"):
        load_config(path)


def test_wrong_type_names_field_and_value(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  simulate:\n    drift: sideways\n")
    with pytest.raises(ConfigError, match=r"data\.simulate\.drift.*'sideways'"):
        load_config(path)


def test_env_expansion_with_default_and_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("workdir: ${WD:-/tmp/default}\ndata:\n  generator:\n    customers: ${N}\n")
    monkeypatch.setenv("N", "123")
    config = load_config(path)
    assert config.workdir == "/tmp/default"
    assert config.data.generator.customers == 123
    monkeypatch.setenv("WD", "/srv/x")
    assert load_config(path).workdir == "/srv/x"


def test_missing_env_var_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("workdir: ${FLYWHEEL_SURELY_UNSET_VAR}\n")
    with pytest.raises(
        ConfigError, match="workdir: environment variable FLYWHEEL_SURELY_UNSET_VAR is not set"
    ):
        load_config(path)


def test_overrides_replace_values_and_reject_unknown_keys() -> None:
    config = apply_overrides(FlywheelConfig(), {"data.generator.customers": 7, "data.simulate.days": "14"})
    assert (config.data.generator.customers, config.data.simulate.days) == (7, 14)
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        apply_overrides(FlywheelConfig(), {"data.nope.x": 1})
    with pytest.raises(ConfigError, match="unknown key 'custmers'"):
        apply_overrides(FlywheelConfig(), {"data.generator.custmers": 1})


def test_period_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="must be after start"):
        apply_overrides(FlywheelConfig(), {"data.generator.end": "2022-01-01"})


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
