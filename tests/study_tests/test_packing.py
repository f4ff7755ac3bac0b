"""Packed trials: each member trains exactly as it would alone, and a packed study behaves as a study."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.storage.engine import Heartbeat, open_storage
from hpstudy.storage.recovery import RetryStaleTrial, WorkerIdentity
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study import trial_attrs
from hpstudy.study.config import load_config
from hpstudy.study.data import load_splits
from hpstudy.study.errors import UserError
from hpstudy.study.models import build_model
from hpstudy.study.pack_runner import PackedRun, _Held, _Heartbeats
from hpstudy.study.packing import PackTrainer, _MaskChunks, stack_key
from hpstudy.study.runner import run_study
from hpstudy.study.optimizers import build_optimizer
from hpstudy.study.checkpoints import cpu_copy
from hpstudy.study.training import TrainingParts, fit, restore_training_state, training_state
from tests.conftest import QUICK_SPACE
from tests.helpers import checkpoint_store

MEMBERS = [
    {"lr": 3e-3, "batch_size": 64, "epochs": 3, "n_layers": 2, "hidden_units": 64, "dropout": 0.2,
     "optimizer": "adam", "initializer": "xavier_uniform"},
    {"lr": 1e-2, "batch_size": 32, "epochs": 2, "n_layers": 2, "hidden_units": 100, "optimizer": "sgd",
     "momentum": 0.9, "weight_decay": 1e-4},
    {"lr": 1e-3, "batch_size": 128, "epochs": 3, "n_layers": 2, "hidden_units": 48, "dropout": 0.3,
     "optimizer": "adamw", "weight_decay": 1e-2, "initializer": "orthogonal"},
    {"lr": 1e-3, "batch_size": 256, "epochs": 4, "n_layers": 1, "hidden_units": 200, "dropout": 0.1,
     "optimizer": "rmsprop", "momentum": 0.5, "activation": "tanh"},
    {"lr": 2e-3, "batch_size": 64, "epochs": 3, "n_layers": 2, "hidden_units": 32, "dropout": 0.5,
     "optimizer": "rmsprop", "initializer": "kaiming_normal"},
    {"lr": 5e-2, "batch_size": 50, "epochs": 2, "n_layers": 3, "hidden_units": 40, "optimizer": "sgd",
     "momentum": 0.0, "activation": "sigmoid", "initializer": "normal", "init_std": 0.1},
    # no hidden layer (a linear model): dropout has no layer to follow, alone or packed; two of
    # them share a stack
    {"lr": 1e-2, "batch_size": 64, "epochs": 2, "n_layers": 0, "dropout": 0.3, "optimizer": "adam"},
    {"lr": 3e-2, "batch_size": 64, "epochs": 3, "n_layers": 0, "dropout": 0.0, "optimizer": "sgd", "momentum": 0.9},
]


@pytest.fixture(scope="module")
def digits():
    return load_splits(load_config().data, seed=0)


def alone(splits, hp, seed):
    torch.manual_seed(seed)
    model = build_model(hp, kind="mlp", input_shape=splits.input_shape, n_classes=splits.n_classes)
    optimizer = build_optimizer(model, hp)
    parts = TrainingParts(torch.Generator().manual_seed(seed))
    return list(fit(model, optimizer, (splits.x_train, splits.y_train, splits.x_val, splits.y_val),
                    epochs=hp.epochs, batch_size=hp.batch_size, parts=parts))


def test_every_member_matches_the_same_trial_trained_alone(digits):
    """Mixed widths, depths, batch sizes, optimizers, activations, dropouts and initializers in one
    pack; members leave when their epochs are done."""
    hps = [Hyperparams.from_flat(values) for values in MEMBERS]
    trainer = PackTrainer(digits, device=torch.device("cpu"), eval_batch_size=4096)
    for index, hp in enumerate(hps):
        trainer.add(index, hp, seed=100 + index)
    packed: dict[int, list] = {index: [] for index in range(len(hps))}
    while trainer.members:
        for member, result in trainer.round():
            packed[member.key].append(result)
            if result.epoch == member.hp.epochs:
                trainer.remove(member)
    for index, hp in enumerate(hps):
        solo = alone(digits, hp, 100 + index)
        assert [r.epoch for r in packed[index]] == [r.epoch for r in solo]
        for mine, theirs in zip(packed[index], solo):
            assert mine.train_loss == pytest.approx(theirs.train_loss, rel=1e-5), (index, hp.optimizer)
            assert mine.val_loss == pytest.approx(theirs.val_loss, rel=1e-5), (index, hp.optimizer)
            assert mine.val_accuracy == pytest.approx(theirs.val_accuracy, abs=1e-6)


def test_member_joining_mid_way_matches_alone(digits):
    first, late = (Hyperparams.from_flat(MEMBERS[i]) for i in (0, 2))
    trainer = PackTrainer(digits, device=torch.device("cpu"), eval_batch_size=4096)
    trainer.add("first", first, seed=1)
    results = []
    joined = False
    while trainer.members:
        for member, result in trainer.round():
            if member.key == "late":
                results.append(result)
            if not joined:  # the late member joins when the first ends its first epoch
                trainer.add("late", late, seed=2)
                joined = True
            if result.epoch == member.hp.epochs:
                trainer.remove(member)
    assert [r.val_loss for r in results] == pytest.approx([r.val_loss for r in alone(digits, late, 2)], rel=1e-5)


def test_members_of_one_stack_match_alone_as_others_join_and_leave_mid_epoch(digits, monkeypatch):
    """Three members share a stack; two join and one leaves in the middle of the others' epochs, so
    the stack is rebuilt with dropout masks drawn but not yet used (chunks of 5 steps here, the
    last chunk of an epoch holding its short batch): each still trains exactly as alone."""
    monkeypatch.setattr(_MaskChunks, "MAX_STEPS", 5)
    base = {"batch_size": 32, "n_layers": 2, "lr": 2e-3}
    hps = {
        "a": Hyperparams.from_flat({**base, "hidden_units": 64, "dropout": 0.3, "optimizer": "adam", "epochs": 3}),
        "b": Hyperparams.from_flat({**base, "hidden_units": 50, "dropout": 0.2, "optimizer": "sgd", "momentum": 0.9,
                                    "epochs": 1}),
        "c": Hyperparams.from_flat({**base, "hidden_units": 40, "dropout": 0.0, "optimizer": "adamw", "epochs": 2}),
    }
    joins = {7: "b", 23: "c"}  # round -> member joining before it
    trainer = PackTrainer(digits, device=torch.device("cpu"), eval_batch_size=4096)
    trainer.add("a", hps["a"], seed=11)
    packed: dict[str, list] = {key: [] for key in hps}
    largest_stack, rounds = 0, 0
    while trainer.members:
        rounds += 1
        if rounds in joins:
            trainer.add(joins[rounds], hps[joins[rounds]], seed=10 + rounds)
        for member, result in trainer.round():
            packed[member.key].append(result)
            if result.epoch == member.hp.epochs:
                trainer.remove(member)
        largest_stack = max(largest_stack, *(len(stack.members) for stack in trainer._stacks.values()))
    assert largest_stack == 3
    for key, hp in hps.items():
        seed = 11 if key == "a" else 10 + next(r for r, k in joins.items() if k == key)
        solo = alone(digits, hp, seed)
        assert len(packed[key]) == hp.epochs
        for mine, theirs in zip(packed[key], solo):
            assert mine.train_loss == pytest.approx(theirs.train_loss, rel=1e-5), key
            assert mine.train_accuracy == pytest.approx(theirs.train_accuracy, abs=1e-6), key
            assert mine.val_loss == pytest.approx(theirs.val_loss, rel=1e-5), key


def test_stacks_group_members_that_pad_little_and_only_changed_stacks_are_rebuilt(digits):
    base = {"n_layers": 2, "batch_size": 64, "epochs": 3}
    hps = {"a": {"hidden_units": 40}, "b": {"hidden_units": 60}, "c": {"hidden_units": 100},
           "d": {"hidden_units": 40, "batch_size": 32}, "e": {"hidden_units": 40, "n_layers": 1}}
    trainer = PackTrainer(digits, device=torch.device("cpu"), eval_batch_size=4096)
    members = {key: trainer.add(key, Hyperparams.from_flat({**base, **values}), seed=1) for key, values in hps.items()}
    trainer.round()
    stacks = {frozenset(m.key for m in stack.members): stack for stack in trainer._stacks.values()}
    assert set(stacks) == {frozenset("ab"), frozenset("c"), frozenset("d"), frozenset("e")}
    assert stack_key(members["a"].hp) == stack_key(members["b"].hp) != stack_key(members["c"].hp)
    trainer.remove(members["b"])
    trainer.round()
    after = {frozenset(m.key for m in stack.members): stack for stack in trainer._stacks.values()}
    assert set(after) == {frozenset("a"), frozenset("c"), frozenset("d"), frozenset("e")}
    assert all(after[key] is stacks[key] for key in (frozenset("c"), frozenset("d"), frozenset("e")))


def alone_with_state(splits, hp, seed, *, stop_after=None, resume=None):
    """Train ``hp`` alone as ``Objective`` does; return its results and, after ``stop_after``
    epochs, its ``training_state`` (a checkpoint); ``resume`` continues from one."""
    torch.manual_seed(seed)
    model = build_model(hp, kind="mlp", input_shape=splits.input_shape, n_classes=splits.n_classes)
    optimizer = build_optimizer(model, hp)
    parts = TrainingParts(torch.Generator().manual_seed(seed))
    start = 1
    if resume is not None:
        restore_training_state(resume[0], model, optimizer, parts)
        start = resume[1] + 1
    results, state = [], None
    data = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    for result in fit(model, optimizer, data, epochs=hp.epochs, batch_size=hp.batch_size, parts=parts, start_epoch=start):
        results.append(result)
        if result.epoch == stop_after:
            state = cpu_copy(training_state(model, optimizer, parts))
            break
    return results, state


def packed_with_state(splits, hps, *, stop_after, resume=None):
    """Train every ``hps[i]`` (seed 100 + i) in one pack; each member's results, and its
    ``training_state`` after ``stop_after`` epochs (then it leaves); ``resume`` maps i -> state."""
    trainer = PackTrainer(splits, device=torch.device("cpu"), eval_batch_size=4096)
    for index, hp in enumerate(hps):
        trainer.add(index, hp, seed=100 + index, resume=(resume or {}).get(index))
    results, states = {index: [] for index in range(len(hps))}, {}
    while trainer.members:
        for member, result in trainer.round():
            results[member.key].append(result)
            if result.epoch == (stop_after or member.hp.epochs):
                states[member.key] = cpu_copy(trainer.training_state(member))
                trainer.remove(member)
    return results, states


def close(mine: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Equal up to float rounding, relative to the tensor's largest entry. (Adam divides by the
    root of tiny second moments, so an entry with almost no gradient carries rounding differences
    of the batched products up to about 1e-5 of the largest weight after a hundred steps; a
    wrong lr, step count or epoch differs by 1e-3 and more.)"""
    return mine.shape == theirs.shape and bool((mine - theirs).abs().max() <= 1e-4 * theirs.abs().max() + 1e-9)


def assert_same_results(mine, theirs):
    assert [r.epoch for r in mine] == [r.epoch for r in theirs]
    for a, b in zip(mine, theirs):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-5)


def test_checkpoint_taken_in_a_pack_is_the_checkpoint_taken_alone_and_resumes_either_way(digits):
    """A packed member's state after two epochs is, tensor for tensor, what the same trial alone
    has after two epochs; resumed alone or in a pack, it goes on exactly as if never stopped."""
    hps = [Hyperparams.from_flat({**values, "epochs": 4}) for values in MEMBERS]
    packed, pack_states = packed_with_state(digits, hps, stop_after=2)
    for index, hp in enumerate(hps):
        solo, solo_state = alone_with_state(digits, hp, 100 + index, stop_after=2)
        assert_same_results(packed[index], solo)
        mine = pack_states[index]
        assert torch.equal(mine["generator"], solo_state["generator"]), "batch order"
        assert torch.equal(mine["torch_rng"], solo_state["torch_rng"]), "dropout draws"
        for name, tensor in solo_state["model"].items():
            assert close(mine["model"][name], tensor), name
        assert mine["optimizer"]["param_groups"] == solo_state["optimizer"]["param_groups"], hp.optimizer
        assert mine["optimizer"]["state"].keys() == solo_state["optimizer"]["state"].keys(), hp.optimizer
        for param, entry in solo_state["optimizer"]["state"].items():
            assert mine["optimizer"]["state"][param].keys() == entry.keys(), hp.optimizer
            for key, tensor in entry.items():
                assert close(mine["optimizer"]["state"][param][key], tensor), (hp.optimizer, key)

    uninterrupted = {index: alone_with_state(digits, hp, 100 + index)[0] for index, hp in enumerate(hps)}
    resumed_packed, _ = packed_with_state(digits, hps, stop_after=None, resume={i: (pack_states[i], 2) for i in range(len(hps))})
    for index, hp in enumerate(hps):
        assert_same_results(resumed_packed[index], uninterrupted[index][2:])
        resumed_alone, _ = alone_with_state(digits, hp, 100 + index, resume=(pack_states[index], 2))
        assert_same_results(resumed_alone, uninterrupted[index][2:])


def test_a_resumed_member_goes_on_with_its_reduced_learning_rate(digits):
    """A plateau schedule that has cut the lr before the checkpoint goes on from the cut lr."""
    hp = Hyperparams.from_flat({**MEMBERS[0], "lr": 0.05, "epochs": 6})

    def packed(resume=None):
        trainer = PackTrainer(digits, device=torch.device("cpu"), eval_batch_size=4096)
        trainer.add(0, hp, seed=100, plateau=(0.5, 0), resume=resume)
        results, state = [], None
        while trainer.members:
            for member, result in trainer.round():
                results.append(result)
                if result.epoch == 3 and resume is None:
                    state = cpu_copy(trainer.training_state(member))
                if result.epoch == hp.epochs:
                    trainer.remove(member)
        return results, state

    full, state = packed()
    assert state["optimizer"]["param_groups"][0]["lr"] < hp.lr, "the schedule cut the lr before the checkpoint"
    resumed, _ = packed(resume=(state, 3))
    assert [r.lr for r in resumed] == [r.lr for r in full[3:]]
    assert_same_results(resumed, full[3:])


def test_packed_study_matches_the_unpacked_one_trial_by_trial(quick_config, tmp_path):
    space = {"lr": [3e-3, 1e-2], "batch_size": [32, 128], "hidden_units": [16, 48], "epochs": 3, "n_layers": 1,
             "dropout": 0.2, "optimizer": "adam"}
    common = dict(study__n_trials=8, search_space=space, study__sampler={"name": "grid"}, study__pruner={"name": "none"})
    solo = quick_config(**common, storage=f"sqlite:///{tmp_path / 'solo.db'}")
    packed = quick_config(**common, storage=f"sqlite:///{tmp_path / 'packed.db'}", train__pack=4)
    run_study(solo)
    result = run_study(packed)
    assert result.finished == 8 and result.trials_this_run == 8
    by_params = lambda cfg: {tuple(sorted(t.params.items())): t for t in optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()}  # noqa: E731
    solo_trials, packed_trials = by_params(solo), by_params(packed)
    assert solo_trials.keys() == packed_trials.keys()
    for params, trial in packed_trials.items():
        twin = solo_trials[params]
        assert trial.state == TrialState.COMPLETE
        if trial.user_attrs[trial_attrs.TRIAL_SEED] == twin.user_attrs[trial_attrs.TRIAL_SEED]:
            assert trial.value == pytest.approx(twin.value, rel=1e-5)
            assert trial.intermediate_values == pytest.approx(twin.intermediate_values, rel=1e-5)
        assert len(trial.user_attrs[trial_attrs.CURVE]["val_loss"]) == 3
        assert trial.user_attrs[trial_attrs.WORKER]["pid"] > 0


def test_packed_study_prunes_and_stops_exactly_at_the_target(quick_config):
    cfg = quick_config(study__n_trials=10, train__pack=4, study__sampler={"name": "random"},
                       study__pruner={"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 1}},
                       search_space={"lr": {"low": 1e-5, "high": 1e-1, "log": True}, "epochs": 5, "n_layers": 1,
                                     "hidden_units": {"low": 16, "high": 64}, "batch_size": [32, 64, 128]})
    result = run_study(cfg)
    trials = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 10 and result.finished == 10
    assert TrialState.PRUNED in states and TrialState.RUNNING not in states
    for trial in trials:
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs[trial_attrs.END_REASON].startswith("pruned at epoch")
            assert len(trial.intermediate_values) == trial.user_attrs[trial_attrs.EPOCHS_RUN] < 5


def test_interrupt_fails_and_requeues_every_held_trial(quick_config):
    cfg = quick_config(study__n_trials=6, train__pack=3, study__pruner={"name": "none"},
                       search_space={"lr": 1e-2, "epochs": {"low": 2, "high": 4}, "n_layers": 1, "hidden_units": 16})

    class StopAfterFirst:
        def started(self, *args, **kwargs):
            pass

        def trial_finished(self, study, trial):
            raise KeyboardInterrupt

    result = run_study(cfg, observer=StopAfterFirst())
    assert result.stop_reason == "interrupted"
    trials = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 1 and TrialState.RUNNING not in states
    failed = [t for t in trials if t.state == TrialState.FAIL]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(failed) == 2 and len(waiting) == 2
    assert sorted(trial_attrs.lineage(t) for t in waiting) == sorted(t.number for t in failed)
    assert run_study(cfg).finished == 6


def test_interrupt_while_the_pack_asks_for_a_trial_fails_and_requeues_that_one_too(quick_config):
    """Ctrl-C while Optuna starts the pack's third trial (stored as running, not yet held): the
    two held trials and the third are all failed and queued again; none is left running."""

    class CtrlCOnTheThirdTrial(optuna.samplers.RandomSampler):
        def before_trial(self, study, trial):
            if trial.number == 2:
                raise KeyboardInterrupt

    cfg = quick_config(study__n_trials=6, train__pack=3, search_space={**QUICK_SPACE, "epochs": 2})
    backend = open_storage(parse_storage_url(cfg.storage), mode="create")
    study = optuna.create_study(study_name="quick", storage=backend, sampler=CtrlCOnTheThirdTrial(seed=0))
    packed = PackedRun(study, cfg, load_splits(cfg.data, seed=0), device=torch.device("cpu"), backend=backend,
                       worker=WorkerIdentity.current().to_dict(), reason_to_stop=lambda _study, **_counts: None, callbacks=[])
    with pytest.raises(KeyboardInterrupt):
        packed.run()
    trials = study.get_trials()
    assert [t.state for t in trials[:3]] == [TrialState.FAIL] * 3
    assert [(t.state, trial_attrs.lineage(t)) for t in trials[3:]] == [(TrialState.WAITING, n) for n in (0, 1, 2)]


def test_interrupted_packed_trials_resume_from_their_checkpoints_exactly(quick_config):
    """Interrupted mid-epoch, a pack leaves each held trial's last checkpoint on disk; the next run
    continues each from it (its ``resumed_from`` epoch) and ends exactly where training the same
    trial alone, uninterrupted, ends."""
    space = {"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "epochs": 6, "n_layers": 1, "hidden_units": [16, 48],
             "batch_size": [32, 64], "dropout": 0.2, "optimizer": ["adam", "sgd"], "momentum": 0.9}
    cfg = quick_config(study__n_trials=5, train__pack=3, train__checkpoint_every=1, study__pruner={"name": "none"},
                       search_space=space)

    rounds = {"n": 0}
    original_round = PackTrainer.round

    def round_then_maybe_stop(trainer):
        ended = original_round(trainer)
        rounds["n"] += 1
        if rounds["n"] == 30:  # 2.3 epochs of 13 batches (batch 32), 4.3 of 7 (batch 64): none has ended
            raise KeyboardInterrupt
        return ended

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PackTrainer, "round", round_then_maybe_stop)
        assert run_study(cfg).stop_reason == "interrupted"
    loaded = optuna.load_study(study_name="quick", storage=cfg.storage)
    failed = [t for t in loaded.get_trials() if t.state == TrialState.FAIL]
    assert len(failed) == 3
    folder = checkpoint_store(cfg.storage, "quick").folder
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"trial-{t.number}.pt" for t in failed)

    assert run_study(cfg).finished == 5
    trials = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials(states=(TrialState.COMPLETE,))
    resumed = [t for t in trials if trial_attrs.RESUMED_FROM in t.user_attrs]
    assert sorted(t.user_attrs[trial_attrs.RESUMED_FROM]["trial"] for t in resumed) == sorted(t.number for t in failed)
    splits = load_splits(cfg.data, seed=cfg.study.seed)
    for trial in resumed:
        assert 1 <= trial.user_attrs[trial_attrs.RESUMED_FROM]["epoch"] < 6
        hp = Hyperparams.from_flat(trial.user_attrs[trial_attrs.HYPERPARAMS])
        uninterrupted = alone(splits, hp, trial.user_attrs[trial_attrs.TRIAL_SEED])
        assert [trial.intermediate_values[e] for e in range(1, 7)] == pytest.approx(
            [r.val_loss for r in uninterrupted], rel=1e-5)
    assert not list(folder.iterdir()), "finished trials leave no checkpoint behind"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_held_trials_keep_their_heartbeat(tmp_path):
    storage = open_storage(parse_storage_url(f"sqlite:///{tmp_path / 'h.db'}"), mode="create",
                           heartbeat=Heartbeat(1, 2, RetryStaleTrial()))
    study = optuna.create_study(storage=storage, study_name="h")
    trial = study.ask()
    held = {trial.number: _Held(trial, trial._trial_id, None, None, None, None)}  # type: ignore[arg-type]
    beats = _Heartbeats(storage, held, interval=0.3)
    beats.start()
    time.sleep(3.0)
    assert storage._get_stale_trial_ids(study._study_id) == [], "a held trial is never stale"
    beats.stopped.set()
    beats.join()
    time.sleep(3.0)
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]


def test_a_packed_trial_beats_from_the_moment_the_pack_holds_it(quick_config, monkeypatch):
    """Another host can only tell a dead pack's trials by their heartbeats, so a pack killed before
    its heartbeat thread's first interval must already have beaten for each trial it held."""
    cfg = quick_config(study__n_trials=3, train__pack=3, study__heartbeat_interval=60, study__grace_period=120,
                       search_space={"lr": 1e-2, "epochs": 2, "n_layers": 1, "hidden_units": 16})
    beating: list[list[int]] = []
    original_round = PackTrainer.round

    def first_round_checks(trainer):
        if not beating:
            with sqlite3.connect(cfg.storage.removeprefix("sqlite:///")) as connection:
                beating.append(sorted(row[0] for row in connection.execute("SELECT trial_id FROM trial_heartbeats")))
        return original_round(trainer)

    monkeypatch.setattr(PackTrainer, "round", first_round_checks)
    run_study(cfg)
    held = [t._trial_id for t in optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()]
    assert beating == [sorted(held)]


@pytest.mark.parametrize(("values", "message"), [
    ({"model.kind": "cnn"}, "packing trains MLPs"),
    ({"search_space.batch_norm": [True, False]}, "batch norm"),
    ({"train.amp": "bf16"}, "full precision"),
])
def test_packing_refuses_what_it_cannot_train(values, message):
    with pytest.raises(UserError, match=message):
        load_config(values={"train.pack": 4, **values})
