"""Parameter specs: every config form, every refusal, and the Optuna distribution each maps to."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpstudy.search_spaces.catalog import PARAMETERS
from hpstudy.search_spaces.params import CategoricalParam, Fixed, FloatParam, IntParam, parse_spec
from hpstudy.study.errors import UserError


def parse(name, raw):
    return parse_spec(name, raw, PARAMETERS[name])


def test_float_range_maps_to_float_distribution():
    spec = parse("lr", {"low": 1e-4, "high": 0.1, "log": True})
    assert spec == FloatParam(1e-4, 0.1, log=True)
    assert spec.to_distribution() == FloatDistribution(1e-4, 0.1, log=True)


def test_int_range_with_step_and_grid():
    spec = parse("epochs", {"low": 5, "high": 20, "step": 5})
    assert spec == IntParam(5, 20, step=5)
    assert spec.to_distribution() == IntDistribution(5, 20, step=5)
    assert spec.grid_values() == [5, 10, 15, 20]


def test_float_step_grid_and_continuous_range_has_no_grid():
    assert parse("dropout", {"low": 0.0, "high": 0.5, "step": 0.25}).grid_values() == [0.0, 0.25, 0.5]
    assert parse("dropout", {"low": 0.0, "high": 0.5}).grid_values() is None


def test_list_and_choices_forms_are_categorical():
    assert parse("optimizer", ["adam", "sgd"]) == CategoricalParam(("adam", "sgd"))
    spec = parse("batch_size", {"choices": [32, 64]})
    assert spec.to_distribution() == CategoricalDistribution((32, 64))


def test_plain_value_is_fixed_and_typed():
    assert parse("dropout", 0) == Fixed(0.0)
    assert isinstance(parse("dropout", 0).value, float)
    assert parse("batch_norm", True) == Fixed(True)
    assert parse("hidden_units", 64).to_distribution() is None


def test_round_trip_through_config_form():
    for name, raw in [("lr", {"low": 1e-4, "high": 0.1, "log": True}), ("epochs", {"low": 1, "high": 9, "step": 2}),
                      ("activation", {"choices": ["relu", "tanh"]}), ("dropout", 0.25)]:
        spec = parse(name, raw)
        assert parse(name, spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("lr", {"low": 0.1, "high": 0.01}, "low (0.1) is greater than high (0.01); swap them"),
        ("weight_decay", {"low": 0.0, "high": 0.1, "log": True}, "a log range needs low > 0"),
        ("lr", {"low": 0, "high": 0.1, "log": True}, "search_space.lr.low: must be in (0, inf)"),
        ("optimizer", [], "choices is empty"),
        ("optimizer", {"choices": []}, "choices is empty"),
        ("initializer", ["he_magic"], "unknown value 'he_magic'; choose from default"),
        ("optimizer", ["adamax"], "unknown value 'adamax'"),
        ("activation", "swish", "unknown value 'swish'"),
        ("batch_size", 0, "must be in [1, inf)"),
        ("batch_size", {"low": 16.5, "high": 64}, "must be an integer"),
        ("epochs", -3, "must be in [1, inf)"),
        ("epochs", 2.5, "must be an integer"),
        ("epochs", "ten", "must be a number"),
        ("dropout", 1.0, "must be in [0, 1)"),
        ("dropout", {"low": 0.0, "high": 1.2}, "must be in [0, 1)"),
        ("dropout", -0.1, "must be in [0, 1)"),
        ("lr", {"low": 1e-4}, "needs both low and high"),
        ("lr", {"low": 1e-4, "high": 1, "stpe": 0.1}, "unknown key 'stpe'; did you mean 'step'?"),
        ("lr", {"low": 1e-4, "high": 1, "log": True, "step": 0.1}, "log and step cannot be combined"),
        ("epochs", {"low": 1, "high": 9, "step": 1.5}, "must be an integer"),
        ("batch_norm", "yes", "must be true or false"),
        ("optimizer", {"low": 1, "high": 2}, "searched with a list of choices"),
        ("hidden_units", True, "must be a number"),
        ("lr", [0.1, 0.1], "choices repeat a value"),
    ],
)
def test_bad_specs_are_refused_with_the_fix(name, raw, message):
    with pytest.raises(UserError) as info:
        parse(name, raw)
    assert message in str(info.value)
    assert str(info.value).startswith(f"search_space.{name}")
    assert "\n" not in str(info.value)
