"""Issue 17, classes 3, 4 and 7 for the config: input that would hang or blow up is refused as it is
read; sampler and pruner options, values and model sizes are checked before anything is created;
a flag and a ``--set`` of one key are never settled silently. Every refusal is one short line."""

from __future__ import annotations

import os
import socket
import time

import optuna
import pytest

from hpstudy.search_spaces.catalog import PARAMETERS
from hpstudy.search_spaces.params import IntParam
from hpstudy.study.cli import main
from hpstudy.study.config import FLAG_OF_KEY, MAX_DEPTH, load_config, parse_yaml
from hpstudy.study.errors import UserError, did_you_mean, quote
from hpstudy.study.model_size import MAX_PARAMETERS
from hpstudy.study.optuna_parts import build_pruner, build_sampler

#: "Billion laughs": nine levels of ten aliases stand for 10**9 values in a few hundred bytes.
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)


def refusal(**load) -> str:
    """The message of the UserError ``load_config(**load)`` raises; it must be one short line."""
    with pytest.raises(UserError) as info:
        load_config(**load)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def _bound_socket(path) -> None:
    """Leave a Unix socket file at ``path``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def cli_refusal(argv, tmp_path, monkeypatch, capsys) -> str:
    """Run ``hpstudy ARGV`` in ``tmp_path``: exit 2, one line on stderr, no traceback, nothing written."""
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert sorted(os.listdir(tmp_path)) == before
    return err


# ---------------------------------------------------------------- class 3: input that hangs or blows up


@pytest.mark.parametrize("where", ["file", "set", "params"])
def test_billion_laughs_are_refused_at_once_wherever_yaml_is_read(where, tmp_path, monkeypatch, capsys):
    """The expanded value was built and its repr put in the message: minutes and gigabytes."""
    (tmp_path / "laughs.yaml").write_text(f"search_space:\n  lr:\n    {LAUGHS.replace(chr(10), chr(10) + '    ')}\n")
    argv = {"file": ["run", "laughs.yaml", "--print-config"],
            "set": ["run", "--print-config", "--set", "search_space.lr={" + LAUGHS.replace("\n", ", ") + "}"],
            "params": ["enqueue", "--study-name", "x", "--params", "{" + LAUGHS.replace("\n", ", ") + "}"]}[where]
    started = time.monotonic()
    err = cli_refusal(argv, tmp_path, monkeypatch, capsys)
    assert time.monotonic() - started < 5
    assert "too large to read" in err and "100,000 values" in err


@pytest.mark.parametrize(("text", "problem"), [
    ("[" * 10_000 + "]" * 10_000, f"nested more than {MAX_DEPTH} levels deep"),
    ("{a: " * 10_000 + "1" + "}" * 10_000, f"nested more than {MAX_DEPTH} levels deep"),
    ("- " * 5_000 + "x", f"nested more than {MAX_DEPTH} levels deep"),
    ("a: &a [*a]", "an alias refers to the value that contains it"),
    ("a: &a [1]\n" + "".join(f"l{i}: &l{i} [*{'a' if i == 0 else f'l{i - 1}'}]\n" for i in range(60)),
     "nested more than 32 levels deep (aliases expanded)"),
    ("x" * 20_000, "a value of 20000 characters"),
], ids=["flow-lists", "flow-maps", "block-lists", "alias-loop", "alias-chain", "long-value"])
def test_deep_looping_or_long_input_is_one_line(text, problem):
    with pytest.raises(UserError) as info:
        parse_yaml(text, source="--set x")
    assert problem in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize("text", ["1" + "0" * 5_000, "2020-13-45"], ids=["5001-digits", "no-such-date"])
def test_a_value_python_cannot_build_is_one_line(text):
    with pytest.raises(UserError, match="a value cannot be read"):
        parse_yaml(f"lr: {text}", source="--params")


def test_config_files_stay_readable_below_the_bounds(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &base {low: 2, high: 3}\nsearch_space:\n  epochs: *base\n  n_layers: *base\n")
    assert parse_yaml(path.read_text(), source="x")["search_space"]["epochs"] == {"low": 2, "high": 3}


@pytest.mark.parametrize(("make", "kind"), [
    (lambda path: path.mkdir(), "is a directory"),
    (lambda path: os.mkfifo(path), "is a named pipe (FIFO)"),
    (lambda path: _bound_socket(path), "is a socket"),
    (lambda path: None, "not found"),
])
def test_a_config_that_is_no_file_says_what_it_is(make, kind, tmp_path, monkeypatch, capsys):
    """A FIFO was opened and waited on for ever; a directory and a FIFO were called "not found"."""
    make(tmp_path / "study.yaml")
    err = cli_refusal(["run", "study.yaml", "--print-config"], tmp_path, monkeypatch, capsys)
    assert f"config file 'study.yaml' {kind}" in err


def test_a_device_as_config_is_refused_unread():
    assert "is a character device" in refusal(path="/dev/zero")


def test_messages_quote_at_most_80_characters_of_a_value(tmp_path):
    long = "y" * 20_000
    for load in ({"overrides": [f"study.name={long}"]}, {"overrides": [f"search_space.optimizer=[{long}]"]},
                 {"overrides": [f"study.sampler.options={{{long}: 1}}"]}, {"values": {"train.device": long}},
                 {"path": tmp_path / long[:200]}, {"overrides": [f"{long}=1"]}):
        assert long[:81] not in refusal(**load)
    assert len(quote(long)) <= 80 and len(quote(list(range(10**6)))) <= 80 and len(quote(["y" * 500] * 9)) <= 80
    assert quote(10**5000) == "<a number of 5000 digits>"


# ---------------------------------------------------------------- class 4: sampler and pruner options


@pytest.mark.parametrize(("override", "message"), [
    ("study.sampler.options.n_startup_trials=abc", "study.sampler.options.n_startup_trials: must be a whole number (got 'abc')"),
    ("study.sampler.options.n_startup_trials=2.5", "study.sampler.options.n_startup_trials: must be a whole number"),
    ("study.sampler.options.n_startup_trials=true", "study.sampler.options.n_startup_trials: must be a whole number"),
    ("study.sampler.options.gamma=5", "study.sampler.options.gamma: TPE's gamma is a Python function"),
    ("study.sampler.options.weights=[1, 2]", "study.sampler.options.weights: TPE's weights is a Python function"),
    ("study.sampler.options.n_ei_candidates=0", "study.sampler.options.n_ei_candidates: must be from 1 to 10000 (got 0)"),
    ("study.sampler.options.prior_weight=.nan", "study.sampler.options.prior_weight: must be a number (got nan)"),
    ("study.sampler.options.constraints_func=f", "study.sampler.options.constraints_func: TPESampler takes a Python object"),
    ("study.sampler={name: cmaes, options: {popsize: 0}}", "study.sampler.options.popsize: must be from 1 to 10000"),
    ("study.sampler={name: cmaes, options: {sigma0: -1}}", "study.sampler.options.sigma0: must be from 1e-12"),
    ("study.sampler={name: cmaes, options: {x0: {lr: 0.1}}}", "study.sampler.options.x0: CmaEsSampler takes a Python object"),
    ("study.sampler={name: qmc, options: {qmc_type: foo}}", "study.sampler.options.qmc_type: The `qmc_type='foo'` is invalid"),
    ("study.pruner={name: percentile, options: {percentile: 101}}", "study.pruner.options.percentile: Percentile must be"),
    ("study.pruner={name: hyperband, options: {max_resource: 0}}", "study.pruner.options.max_resource: must be from 1"),
    ("study.pruner={name: hyperband, options: {reduction_factor: 1}}", "study.pruner.options.reduction_factor: must be from 2"),
    ("study.pruner={name: threshold, options: {lower: .inf}}", "study.pruner.options.lower: must be a number (got inf)"),
    ("study.pruner.options.n_warmup_steps=[1]", "study.pruner.options.n_warmup_steps: must be a whole number (got [1])"),
])
def test_options_optuna_would_crash_on_later_are_refused_naming_the_key(override, message):
    assert message in refusal(overrides=[override])


def test_a_refused_option_is_never_suggested_again():
    message = refusal(overrides=["study.sampler.options.gama=0.1"])
    assert "unknown option 'gama' for TPESampler" in message and "gamma" not in message
    assert did_you_mean("lr", ["lr", "lrr", 1, None]) == "; did you mean 'lrr'?"  # mixed types: no TypeError


def test_options_of_every_kind_still_reach_optuna():
    cfg = load_config(overrides=["study.sampler.options={n_startup_trials: 4, n_ei_candidates: 12, multivariate: false}",
                                 "study.pruner={name: hyperband, options: {max_resource: auto, min_resource: 2}}"])
    sampler, pruner = build_sampler(cfg, seed=1), build_pruner(cfg.study.pruner)
    assert isinstance(sampler, optuna.samplers.TPESampler) and isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert sampler._n_startup_trials == 4 and pruner._min_resource == 2


def test_a_bad_option_creates_nothing(tmp_path, monkeypatch, capsys):
    """The study was created and stored with the option, then its first trial crashed."""
    err = cli_refusal(["run", "--n-trials", "1", "--no-report", "--set", "study.sampler.options.n_startup_trials=abc"],
                      tmp_path, monkeypatch, capsys)
    assert "study.sampler.options.n_startup_trials" in err


def test_a_seed_out_of_range_is_the_seeds_fault():
    """numpy's "Seed must be between 0 and 2**32 - 1" was reported under study.sampler.options."""
    message = refusal(values={"study.seed": 2**40})
    assert message.startswith("study.seed: input should be less than or equal to 4294967295")


# ---------------------------------------------------------------- class 4: values


@pytest.mark.parametrize(("override", "message"), [
    ("search_space.lr=1e300", "search_space.lr: must be at most 10000000000"),
    ("search_space.lr={low: 1e-5, high: 1e300}", "search_space.lr.high: must be at most 10000000000"),
    ("search_space.weight_decay=[0, 1e40]", "search_space.weight_decay: must be at most 10000000000"),
    ("search_space.dropout={low: 0, high: 0.5, step: .inf}", "search_space.dropout.step: must be a finite positive number (got inf)"),
    ("search_space.epochs={low: 1, high: 5, step: .nan}", "search_space.epochs.step: must be a finite positive number (got nan)"),
    ("search_space.dropout={low: 0, high: 0.5, step: 5e-324}", "into more than 1e+15 steps"),
    ("search_space.hidden_units=1000000000000", "search_space.hidden_units: must be at most 1048576"),
    ("search_space.epochs=1000000000000", "search_space.epochs: must be at most 100000"),
    ("search_space.n_layers=1" + "0" * 400, "search_space.n_layers: must be at most 1000"),
    ("search_space.batch_size=[64, 1e300]", "search_space.batch_size: must be at most 1048576"),
    ("search_space.batch_size=[a, 1]", "search_space.batch_size: must be a number (got 'a')"),
    ("search_space.optimizer=[adam, 1]", "search_space.optimizer: unknown value 1"),
    ("study.n_trials=100000000000000000000", "study.n_trials: input should be less than or equal to 1000000"),
    ("study.timeout=.inf", "study.timeout: input should be a finite number"),
    ("study.timeout=.nan", "study.timeout: input should be a finite number"),
    ("study.heartbeat_interval=100000000000000", "study.heartbeat_interval: input should be less than or equal to 3600"),
    ("train.early_stopping.min_delta=.inf", "train.early_stopping.min_delta: input should be a finite number"),
    ("train.pack=100000", "train.pack: input should be less than or equal to 1024"),
    ("data.root=''", "data.root: '' cannot name a folder"),
])
def test_absurd_values_are_refused_naming_the_key(override, message):
    text = refusal(overrides=[override])
    assert message in text
    assert "cannot convert" not in text and "not supported between" not in text


def test_a_device_with_a_trailing_newline_is_refused():
    assert "unknown device 'cpu\\n'" in refusal(values={"train.device": "cpu\n"})


def test_huge_grids_are_counted_not_listed():
    started = time.monotonic()
    assert "2,000,000,001 grid values is too many" in refusal(
        overrides=["study.sampler.name=grid", "search_space={seed: {low: 0, high: 2000000000}}"])
    assert "--repeats must be from 1 to 10,000" in refusal(preset="lr-sweep", repeats=10**9)
    assert time.monotonic() - started < 2
    assert not IntParam(1, 5).contains(10**400) and PARAMETERS["epochs"].problem_with(10**400)


@pytest.mark.parametrize(("overrides", "name", "count"), [
    (["data.dataset=mnist", "search_space={n_layers: 2, hidden_units: {low: 16, high: 100000}}"],
     "hidden_units", "10,079,600,010"),
    (["model.kind=cnn", "search_space={channels: 60000, n_conv: 3}"], "channels", "324,123,857,930"),
    (["model.kind=cnn", "search_space={channels: 64, n_conv: {low: 1, high: 14}}"], "n_conv", "8,"),
    (["train.pack=64", "data.dataset=cifar10", "search_space={n_layers: 1, hidden_units: 8000}"],
     "hidden_units", "x 64 packed"),
    (["variants={wide: {hidden_units: 1000000}}", "search_space={variant: [wide]}"], "hidden_units", "1,"),
])
def test_a_model_too_big_to_build_is_refused_before_anything_runs(overrides, name, count):
    """hidden_units=1000000000000 crashed the first trial with DefaultCPUAllocator's traceback."""
    message = refusal(overrides=overrides)
    assert message.startswith(f"search_space.{name}: the largest model this space can draw")
    assert count in message and f"more than the {MAX_PARAMETERS:,}" in message


def test_the_largest_reasonable_models_pass():
    assert load_config(overrides=["data.dataset=cifar10", "search_space={n_layers: 4, hidden_units: 4096}"])
    assert load_config(overrides=["model.kind=cnn", "data.dataset=cifar10", "search_space={channels: 128, n_conv: 4}"])


# ---------------------------------------------------------------- class 7: a flag and a --set of one key


@pytest.mark.parametrize("key", sorted(set(FLAG_OF_KEY) - {"study.sampler"}))
def test_a_flag_and_a_set_of_its_key_are_refused_unless_they_agree(key):
    value = {"study.n_trials": 5, "study.timeout": 5.0, "study.budget_epochs": 5, "study.name": "a",
             "study.seed": 1, "storage": "sqlite:///a.db", "train.device": "cpu", "train.pack": 2,
             "search_space.seed": [0, 1, 2]}[key]
    other = {"study.name": "b", "storage": "sqlite:///b.db", "train.device": "auto", "search_space.seed": [0, 1]}.get(key, 9)
    load = {"repeats": 3, "preset": "lr-sweep"} if key == "search_space.seed" else {"values": {key: value}}
    message = refusal(overrides=[f"{key}={other}"], **load)
    assert message == f"{FLAG_OF_KEY[key]} and --set both set {key}, to different values; give it once"
    section, _, leaf = key.rpartition(".")
    if section:  # the --set of the section that holds the key
        assert "both set" in refusal(overrides=[f"{section}={{{leaf}: {other}}}"], **load)
    load_config(overrides=[f"{key}={value}"], **load)  # the same value twice: nothing is lost


def test_the_cli_refuses_a_flag_and_a_set_of_the_section_holding_it(tmp_path, monkeypatch, capsys):
    err = cli_refusal(["run", "--print-config", "--n-trials", "5", "--set", "study={n_trials: 9}"],
                      tmp_path, monkeypatch, capsys)
    assert "--n-trials and --set both set study.n_trials" in err
