"""Config: YAML files, presets, --set overrides, validation messages, storing and comparing."""

from __future__ import annotations

import optuna
import pytest

from hpstudy.study.config import StudyConfig, load_config, parse_override
from hpstudy.study.optuna_parts import build_pruner
from hpstudy.study.errors import UserError


def write(tmp_path, text, name="study.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_file_with_all_sections(tmp_path):
    path = write(tmp_path, """
study:
  name: mine
  n_trials: 7
  timeout: 30
  seed: 3
  sampler: {name: random}
  pruner: {name: hyperband, options: {min_resource: 1}}
storage: sqlite:///x.db
data: {dataset: digits, val_fraction: 0.25, train_subset: 500}
model: {kind: cnn}
train:
  device: cpu
  early_stopping: {patience: 3, min_delta: 0.001}
  scheduler: {name: plateau, factor: 0.3}
search_space:
  lr: {low: 1e-4, high: 1e-1, log: true}
  channels: [8, 16]
  dropout: 0.1
""")
    cfg = load_config(path)
    assert cfg.study.name == "mine" and cfg.study.n_trials == 7 and cfg.study.timeout == 30.0
    assert cfg.study.sampler.name == "random" and cfg.study.pruner.options == {"min_resource": 1}
    assert cfg.data.val_fraction == 0.25 and cfg.model.kind == "cnn"
    assert cfg.train.early_stopping.patience == 3 and cfg.train.scheduler.name == "plateau"
    assert cfg.search_space.searched == ("lr", "channels")
    assert cfg.search_space.specs["lr"].low == 1e-4  # "1e-4" read as a float, not a string


def test_file_may_start_from_a_preset_and_replace_single_params(tmp_path):
    path = write(tmp_path, "preset: default\nsearch_space:\n  dropout: 0.2\nstudy: {n_trials: 4}\n")
    cfg = load_config(path)
    default = load_config()
    assert cfg.study.n_trials == 4 and cfg.study.name == default.study.name
    assert cfg.search_space.specs["dropout"].value == 0.2
    assert cfg.search_space.specs["lr"] == default.search_space.specs["lr"]


def test_set_overrides_any_key_with_yaml_values():
    cfg = load_config(overrides=[
        "study.n_trials=5", "search_space.lr.high=0.5", "search_space.activation=[relu, tanh]",
        "study.pruner.name=none", "train.early_stopping.patience=2",
    ])
    assert cfg.study.n_trials == 5
    assert cfg.search_space.specs["lr"].high == 0.5
    assert cfg.search_space.specs["activation"].choices == ("relu", "tanh")
    assert cfg.study.pruner.name == "none" and cfg.train.early_stopping.patience == 2


def test_changing_sampler_or_pruner_by_name_drops_the_old_options():
    cfg = load_config(overrides=["study.pruner.name=hyperband"])
    assert cfg.study.pruner.name == "hyperband" and cfg.study.pruner.options == {}
    cfg = load_config(overrides=["study.pruner.name=percentile", "study.pruner.options={percentile: 40}"])
    assert cfg.study.pruner.options == {"percentile": 40}
    cfg = load_config(overrides=["study.pruner.options={percentile: 40}", "study.pruner.name=percentile"])
    assert cfg.study.pruner.options == {"percentile": 40}


def test_file_naming_another_pruner_does_not_inherit_preset_options(tmp_path):
    cfg = load_config(write(tmp_path, "preset: default\nstudy: {pruner: {name: successive_halving}}\n"))
    assert cfg.study.pruner.name == "successive_halving" and cfg.study.pruner.options == {}


def test_a_config_without_a_preset_prunes_with_the_tuned_median_defaults(tmp_path):
    """The pruner hpstudy ships as default is the one benchmark 2 tuned, whether the config comes
    from the default preset or from a file that names no pruner; options given replace single values."""
    bare = load_config(write(tmp_path, "study: {name: bare}\n"))
    preset = load_config()
    for cfg in (bare, preset):
        pruner = build_pruner(cfg.study.pruner)
        assert isinstance(pruner, optuna.pruners.MedianPruner)
        assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (3, 5)
    named = load_config(write(tmp_path, "study: {pruner: {name: median, options: {n_warmup_steps: 1}}}\n", "named.yaml"))
    pruner = build_pruner(named.study.pruner)
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (3, 1)


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(Exception):
        cfg.study.n_trials = 3  # type: ignore[misc]


def test_round_trip_and_identity_ignore_run_only_keys():
    cfg = load_config()
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    other = cfg.with_overrides({"study.n_trials": 99, "study.timeout": 5, "train.device": "cpu", "storage": "sqlite:///o.db",
                                "train.keep_best_model": True, "train.checkpoint_every": 3, "train.pack": 4})
    assert other.identity() == cfg.identity()  # how a run goes, not what the study is
    assert cfg.with_overrides({"train.amp": "bf16"}).identity() != cfg.identity()  # changes what trials compute
    assert cfg.with_overrides({"search_space.dropout": 0.1}).identity() != cfg.identity()


def test_direction_follows_the_metric():
    assert load_config().study.direction == "minimize"
    assert load_config(overrides=["study.metric=val_accuracy"]).study.direction == "maximize"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["study.n_trails=3"], "unknown config key 'study.n_trails'; did you mean 'n_trials'?"),
        (["sudy.name=x"], "unknown config key 'sudy'; did you mean 'study'?"),
        (["study.n_trials=0"], "study.n_trials: input should be greater than 0"),
        (["study.n_trials=2.5"], "study.n_trials: input should be a valid integer"),
        (["study.n_trials=ten"], "study.n_trials: input should be a valid integer"),
        (["study.timeout=-1"], "study.timeout: input should be greater than or equal to 0"),
        (["study.sampler.name=bayes"], "study.sampler.name: unknown value 'bayes'"),
        (["study.pruner.name=early"], "study.pruner.name: unknown value 'early'"),
        (["data.dataset=imagenet"], "data.dataset: unknown value 'imagenet'"),
        (["data.val_fraction=1.5"], "data.val_fraction"),
        (["train.device=gpu"], "train.device: unknown device 'gpu'"),
        (["study.sampler.options={n_startup: 3}"], "unknown option 'n_startup' for TPESampler; did you mean 'n_startup_trials'?"),
        (["study.sampler.options={seed: 3}"], "set study.seed instead"),
        (["study.pruner.name=threshold"], "the threshold pruner needs a bound"),
        (["study.sampler.name=grid"], "grid sampler needs choices or a step"),
        (["search_space.lr={low: 0.1, high: 0.001}"], "low (0.1) is greater than high (0.001); swap them"),
        (["search_space.batch_size=-4"], "search_space.batch_size: must be in [1, inf)"),
        (["search_space.dropout=1"], "search_space.dropout: must be in [0, 1)"),
        (["search_space.optimizer=[]"], "search_space.optimizer: choices is empty"),
        (["search_space.initializer=[he]"], "search_space.initializer: unknown value 'he'"),
        (["search_space.activation=[swish]"], "search_space.activation: unknown value 'swish'"),
        (["search_space.optimizer=[nadam]"], "search_space.optimizer: unknown value 'nadam'"),
        (["search_space.epochs=0"], "search_space.epochs: must be in [1, inf)"),
        (["search_space.lr=0.01", "search_space.lr.high=0.5"], "'search_space.lr' is a plain value"),
        (["study.direction=maximize"], "does not fit metric 'val_loss'"),
        (["n_trials"], "--set needs key.path=value"),
        (["study.name=[unclosed"], "not valid YAML"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(overrides, message):
    with pytest.raises(UserError) as info:
        load_config(overrides=overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="config file .* not found"):
        load_config(tmp_path / "nope.yaml")


def test_not_yaml(tmp_path):
    with pytest.raises(UserError, match=r"not valid YAML at line 3"):
        load_config(write(tmp_path, "study:\n  name: [x\n  n: {"))


def test_a_key_written_twice_is_refused_at_its_second_line(tmp_path):
    with pytest.raises(UserError, match=r"at line 4 \(key 'epochs' is written twice; keep one\)"):
        load_config(write(tmp_path, "search_space:\n  epochs: 3\n  lr: 0.01\n  epochs: 5\n"))


def test_yaml_merge_keys_may_repeat_what_they_merge(tmp_path):
    text = "search_space:\n  epochs:\n    <<: {low: 2, high: 3}\n    high: 4\n"
    assert load_config(write(tmp_path, text)).search_space.to_dict()["epochs"] == {"low": 2, "high": 4}


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("", "empty"), ("42\n", "a int")])
def test_not_a_mapping(tmp_path, text, kind):
    with pytest.raises(UserError, match=f"is {kind}, not a mapping"):
        load_config(write(tmp_path, text))


def test_unknown_preset_in_file(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'nope'"):
        load_config(write(tmp_path, "preset: nope\n"))


def test_parse_override_types():
    assert parse_override("a.b=1e-3") == ("a.b", 0.001)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=text") == ("a", "text")


@pytest.mark.parametrize(("values", "message"), [
    ({"variants": {"a": {"optimizer": "lion"}}, "search_space.variant": ["a"]}, "variants.a.optimizer: unknown value 'lion'"),
    ({"variants": {"a": {"seed": 1}}, "search_space.variant": ["a"]}, "'seed' cannot be set by a variant"),
    ({"variants": {"a": {"lrr": 1}}, "search_space.variant": ["a"]}, "did you mean 'lr'"),
    ({"variants": {"a": {"weight_decay": 0.1}}, "search_space.variant": ["b"]}, "no variant named 'b'"),
    ({"variants": {"a": {"lr": 0.1}}, "search_space.variant": ["a"], "search_space.lr": [0.1, 0.2]}, "lr is also searched"),
    ({"variants": {"a": {}}, "search_space.variant": ["a"]}, "must be a mapping of params"),
])
def test_bad_variants(values, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        load_config(values=values)


@pytest.mark.parametrize(("preset", "overrides", "quick", "name"), [
    ("default", [], False, "digits-mlp"),
    ("default", [], True, "digits-mlp-quick"),
    ("default", ["data.dataset=mnist"], False, "mnist-mlp"),
    ("default", ["model.kind=cnn", "data.dataset=cifar10"], True, "cifar10-cnn-quick"),
    ("lr-sweep", [], True, "lr-sweep-quick"),
    ("epochs-sweep", ["data.dataset=fashion_mnist"], False, "epochs-sweep-fashion_mnist"),
    ("mlp-mnist", ["data.dataset=mnist"], False, "mnist-mlp-full"),
    ("cnn", ["data={dataset: mnist}"], False, "cnn-mnist"),
])
def test_a_preset_run_on_other_data_or_at_smoke_size_gets_a_study_of_its_own(preset, overrides, quick, name):
    assert load_config(preset=preset, overrides=overrides, quick=quick).study.name == name


def test_a_study_named_by_the_user_keeps_its_name_whatever_the_preset_run_changes(tmp_path):
    assert load_config(preset="lr-sweep", quick=True, values={"study.name": "mine"}).study.name == "mine"
    assert load_config(preset="default", overrides=["study.name=mine", "data.dataset=mnist"]).study.name == "mine"
    assert load_config(preset="default", overrides=["study={name: mine}"], quick=True).study.name == "mine"
    path = write(tmp_path, "preset: default\nstudy: {name: mine}\ndata: {dataset: mnist}\n")
    assert load_config(path, quick=True).study.name == "mine"
    assert load_config(write(tmp_path, "preset: default\ndata: {dataset: mnist}\n", "b.yaml")).study.name == "mnist-mlp"
    assert load_config(write(tmp_path, "study: {n_trials: 3}\n", "c.yaml")).study.name == "hpstudy"  # no preset


def test_a_smoke_run_leaves_the_presets_own_study_free(tmp_path, monkeypatch, capsys):
    from hpstudy.study.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--preset", "lr-sweep", "--quick", "--no-report"]) == 0
    assert main(["run", "--preset", "lr-sweep", "--n-trials", "1", "--no-report"]) == 0, capsys.readouterr().err
    names = sorted(s.study_name for s in optuna.get_all_study_summaries("sqlite:///hpstudy.db"))
    assert names == ["lr-sweep", "lr-sweep-quick"]
