from pathlib import Path

import pytest

from flywheel.config import apply_overrides, default_config, load_config
from flywheel.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_loads_and_matches_the_model_defaults() -> None:
    config = load_config(REPO / "configs" / "churn.yaml")
    assert config.model_dump() == default_config().model_dump()


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
    monkeypatch.setenv("WD", "")  # as in a shell, an empty variable takes the default too
    assert load_config(path).workdir == "/tmp/default"
    monkeypatch.setenv("N", "")  # set but empty, without a default: empty (here, not a number)
    with pytest.raises(ConfigError, match="customers"):
        load_config(path)


def test_missing_env_var_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("workdir: ${FLYWHEEL_SURELY_UNSET_VAR}\n")
    with pytest.raises(
        ConfigError, match="workdir: environment variable FLYWHEEL_SURELY_UNSET_VAR is not set"
    ):
        load_config(path)


def test_overrides_replace_values_and_reject_unknown_keys() -> None:
    config = apply_overrides(default_config(), {"data.generator.customers": 7, "data.simulate.days": "14"})
    assert (config.data.generator.customers, config.data.simulate.days) == (7, 14)
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        apply_overrides(default_config(), {"data.nope.x": 1})
    with pytest.raises(ConfigError, match="unknown key 'custmers'"):
        apply_overrides(default_config(), {"data.generator.custmers": 1})


def test_period_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="must be after start"):
        apply_overrides(default_config(), {"data.generator.end": "2022-01-01"})


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


TOKEN, WEBHOOK = "adm-7f3c9e1b-secret", "https://hooks.slack.com/services/T0001/B0002/XyZsecretPath"


def test_a_cross_field_error_prints_neither_the_config_nor_its_secrets(tmp_path: Path) -> None:
    """Regression: a root-level error echoed the whole resolved config, admin token and webhook too."""
    path = tmp_path / "c.yaml"
    path.write_text(
        f"serving:\n  admin_token: {TOKEN}\nalerts:\n  webhook_url: {WEBHOOK}\nlabels:\n  cadence_days: 10\n"
    )
    with pytest.raises(ConfigError) as from_file:
        load_config(path)
    with pytest.raises(ConfigError) as from_overrides:
        apply_overrides(
            default_config(),
            {"serving.admin_token": TOKEN, "alerts.webhook_url": WEBHOOK, "labels.cadence_days": 10},
        )
    for error in (from_file.value, from_overrides.value):
        message = str(error)
        assert "labels.cadence_days (10) must be a multiple of features.cadence_days (7)" in message
        assert TOKEN not in message and "XyZsecretPath" not in message and "hooks.slack" not in message
        assert "use_case" not in message  # not the whole config


def test_a_secret_field_with_a_wrong_value_is_named_but_not_echoed() -> None:
    with pytest.raises(ConfigError) as error:
        apply_overrides(default_config(), {"serving.admin_token": [TOKEN], "tracking.uri": 5})
    message = str(error.value)
    assert "serving.admin_token: Input should be a valid string (got ***)" in message
    assert TOKEN not in message and "tracking.uri" in message


def test_a_binary_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match=r"model\.bin: not a text file; expected a UTF-8 YAML config"):
        load_config(path)


def test_a_multiclass_metric_on_a_binary_use_case_is_named() -> None:
    """Regression: `training.tuning.metric: macro_f1` on churn ended in a KeyError inside tuning, and a
    macro-F1 performance trigger never fired (binary periods have no such figure)."""
    from flywheel.config import default_config as defaults

    with pytest.raises(ConfigError, match=r"training.tuning.metric macro_f1.*churn is binary"):
        defaults("churn", **{"training.tuning.metric": "macro_f1"})
    with pytest.raises(ConfigError, match=r"retrain.performance_metric accuracy"):
        defaults("bank", **{"retrain.performance_metric": "accuracy", "retrain.min_performance": 0.7})
    assert defaults("credit", **{"training.tuning.metric": "macro_f1"}).training.tuning.metric == "macro_f1"
