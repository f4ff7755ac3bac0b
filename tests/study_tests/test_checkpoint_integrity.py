"""Checkpoints that cannot be trusted or written: checksums, damaged files, a full disk, a folder
that takes no file. None of them may cost a trial."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpstudy.storage.recovery import RetryStaleTrial
from hpstudy.study import trial_attrs
from hpstudy.study.checkpoints import BadCheckpoint, CheckpointStore, CheckpointWriter, atomic_save
from hpstudy.study.cli import main
from hpstudy.study.config import StudyConfig, load_config
from hpstudy.study.errors import UserError
from hpstudy.study.models import build_model
from hpstudy.study.runner import run_study
from tests.helpers import checkpoint_store
from tests.helpers.tmpfs import fill, small_tmpfs
from tests.study_tests.test_checkpoints import InterruptAt

EPOCHS = 4
SPACE = {"lr": 0.01, "epochs": EPOCHS, "n_layers": 1, "hidden_units": 32, "dropout": 0.1, "batch_size": 128}
STEPS_PER_EPOCH = -(-400 // 128)  # quick_config trains on 400 examples


def flip(path: Path) -> None:
    """Flip the bits of a few bytes in the middle of the file (where the tensors are)."""
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 8):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "bit flips": flip,
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "empty": lambda path: path.write_bytes(b""),
    "not a checkpoint": lambda path: atomic_save({"epoch": 1, "weights": torch.ones(3)}, path),
}


def test_every_checkpoint_carries_a_checksum_that_load_verifies(tmp_path):
    """A flipped byte, a cut or an empty file is refused on load (naming the file); the file
    itself stays a plain torch file that torch.load reads."""
    writer = CheckpointWriter()
    store = CheckpointStore(tmp_path, "s")
    state = {"model": {"w": torch.randn(256, 64)}, "curve": [1.0, None]}
    for lineage in range(len(DAMAGE) + 1):
        writer.submit(store.path(lineage), state)
    writer.close()
    assert torch.equal(torch.load(store.path(0), weights_only=True)["model"]["w"], state["model"]["w"])
    assert torch.equal(store.load(0)["model"]["w"], state["model"]["w"]) and store.damage(0) is None
    for lineage, (kind, damage) in enumerate(DAMAGE.items(), start=1):
        damage(store.path(lineage))
        if kind == "not a checkpoint":  # checksum-sound: refused for its form when a trial resumes
            continue
        with pytest.raises(BadCheckpoint, match=rf"checkpoint .*trial-{lineage}\.pt is unusable"):
            store.load(lineage)
        assert store.damage(lineage), kind


def small_config(storage: str, **values: Any) -> StudyConfig:
    """``quick_config``'s study (conftest) with one trial of fixed params, checkpointed every epoch."""
    return load_config(preset="default", values={
        "storage": storage, "study.name": "quick", "study.n_trials": 1, "study.pruner": {"name": "none"},
        "data.train_subset": 400, "data.val_subset": 200, "train.device": "cpu", "search_space": SPACE,
        "train.checkpoint_every": 1, **values,
    })


@pytest.fixture(scope="module")
def cut_trial_files(tmp_path_factory) -> tuple[Path, list[float]]:
    """Made once: a folder with a study whose only trial was interrupted in its third epoch (failed,
    queued again, its checkpoint after epoch 2 on disk), and the validation curve an uninterrupted
    run of that trial draws."""
    folder = tmp_path_factory.mktemp("cut")
    run_study(small_config(f"sqlite:///{folder / 'whole.db'}"))
    reference = optuna.load_study(study_name="quick", storage=f"sqlite:///{folder / 'whole.db'}").get_trials()[0]
    cut = small_config(f"sqlite:///{folder / 'study.db'}")
    assert run_study(cut, model_factory=InterruptAt(KeyboardInterrupt(), step=2 * STEPS_PER_EPOCH + 2)).interrupted
    assert list(checkpoint_store(cut.storage, "quick").lineages()) == [0]
    return folder, reference.user_attrs[trial_attrs.CURVE]["val_loss"]


@pytest.fixture
def cut_trial(cut_trial_files, tmp_path) -> tuple[StudyConfig, CheckpointStore, list[float]]:
    """A copy of ``cut_trial_files``'s study for one test: its config, checkpoints and reference curve."""
    folder, reference = cut_trial_files
    with sqlite3.connect(folder / "study.db") as source, sqlite3.connect(tmp_path / "study.db") as copy:
        source.backup(copy)  # with what the write-ahead log holds
    shutil.copytree(folder / "study.db.checkpoints", tmp_path / "study.db.checkpoints")
    cfg = small_config(f"sqlite:///{tmp_path / 'study.db'}")
    return cfg, checkpoint_store(cfg.storage, "quick"), reference


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_checkpoint_never_costs_the_trial(cut_trial, kind, capsys):
    """Its retry says which file it could not use, starts from epoch 0 with the trial's params and
    seed, and completes: its curve is the one an uninterrupted run draws."""
    cfg, store, reference = cut_trial
    DAMAGE[kind](store.path(0))
    assert run_study(cfg).finished == 1
    trials = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retry = trials[1]
    assert trial_attrs.lineage(retry) == 0 and retry.params == trials[0].params
    assert trial_attrs.RESUMED_FROM not in retry.user_attrs
    assert retry.user_attrs[trial_attrs.CURVE]["val_loss"] == pytest.approx(reference)
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and str(store.path(0)) in warning[0] and "starts again from epoch 0" in warning[0]
    assert list(store.lineages()) == []


def test_a_damaged_checkpoint_never_costs_a_packed_trial(cut_trial, capsys):
    """The same in a pack, which reads the checkpoints a trial alone wrote."""
    cfg, store, reference = cut_trial
    flip(store.path(0))
    assert run_study(cfg.with_overrides({"train.pack": 2})).finished == 1
    trials = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trial_attrs.RESUMED_FROM not in trials[1].user_attrs
    assert trials[1].user_attrs[trial_attrs.CURVE]["val_loss"] == pytest.approx(reference, rel=1e-4)
    assert "starts again from epoch 0" in capsys.readouterr().err


class FillDiskAt:
    """Builds the real model and fills the disk under ``folder`` at one training step."""

    def __init__(self, folder: Path, *, step: int) -> None:
        self.folder, self.step, self.calls = folder, step, 0
        self.filler: Path | None = None

    def __call__(self, hp, **kwargs):
        model = build_model(hp, **kwargs)
        model.register_forward_pre_hook(self._count)
        return model

    def _count(self, module, inputs) -> None:
        if module.training:
            self.calls += 1
            if self.calls == self.step:
                self._wait_for_a_checkpoint_on_disk()  # the writer thread may still hold epoch 2's
                self.filler = fill(self.folder)

    def _wait_for_a_checkpoint_on_disk(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(self.folder.rglob("trial-*.pt")):
            assert time.monotonic() < deadline, "no checkpoint reached the disk"
            time.sleep(0.01)


RESUME_HINT = r"then `hpstudy resume --study-name quick --storage sqlite:///\S+` continues from the last checkpoint$"


def test_a_full_disk_under_the_checkpoints_stops_the_run_and_queues_the_trial(tmp_path):
    """A real 1 MB file system fills up while a trial trains: the run ends with one line (which
    file, why, what to do), the trial is failed and queued again like an interrupted one, and once
    there is room the next run continues it from its last checkpoint."""
    with small_tmpfs(tmp_path / "ck") as folder:
        cfg = small_config(f"sqlite:///{tmp_path / 'study.db'}", **{"search_space.epochs": 6, "train.checkpoint_dir": str(folder)})
        fill_the_disk = FillDiskAt(folder, step=2 * STEPS_PER_EPOCH + 1)  # as the third epoch starts
        with pytest.raises(UserError, match=r"^disk full at .*trial-0\.pt; trial 0 stopped and queued again: free space "
                                            r"there, " + RESUME_HINT):
            run_study(cfg, model_factory=fill_the_disk)
        trials = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
        store = CheckpointStore(folder, "quick", checkpoint_store(cfg.storage, "quick").study_uid)
        assert store.load(0) is not None, "the last checkpoint that fit is intact"
        assert fill_the_disk.filler is not None
        fill_the_disk.filler.unlink()
        assert run_study(cfg).finished == 1
    retry = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()[-1]
    assert retry.state == TrialState.COMPLETE and trial_attrs.lineage(retry) == 0
    assert retry.user_attrs[trial_attrs.RESUMED_FROM]["epoch"] >= 1  # the last checkpoint that made it to disk
    assert len(retry.user_attrs[trial_attrs.CURVE]["val_loss"]) == 6


def test_a_full_disk_under_a_packs_checkpoints_queues_every_trial_it_held(tmp_path):
    """The same for a pack: each trial it held is failed and queued again, and the line names them."""
    with small_tmpfs(tmp_path / "ck") as folder:
        cfg = small_config(f"sqlite:///{tmp_path / 'study.db'}", **{
            "study.n_trials": 2, "train.pack": 2, "train.checkpoint_dir": str(folder),
            "search_space.lr": {"low": 0.001, "high": 0.1, "log": True}})
        filler = fill(folder)
        with pytest.raises(UserError, match=r"^disk full at .*\.pt; trial 0, 1 stopped and queued again: free space "
                                            r"there, " + RESUME_HINT):
            run_study(cfg)
        states = [t.state for t in optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()]
        assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
        filler.unlink()
        assert run_study(cfg).finished == 2
    trials = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    assert sorted(trial_attrs.lineage(t) for t in trials if t.state == TrialState.COMPLETE) == [0, 1]


def test_a_retry_is_queued_once_however_often_recovery_sees_its_trial(sqlite_url):
    """The trial a full disk cut has its retry queued before Optuna marks it failed: a kill in
    between leaves it RUNNING with its retry queued, and recovering it must not queue a second."""
    study = optuna.create_study(storage=sqlite_url)
    trial = study.ask()
    trial.suggest_float("lr", 1e-3, 1e-1)
    frozen = study._storage.get_trial(trial._trial_id)  # noqa: SLF001
    RetryStaleTrial()(study, frozen)
    RetryStaleTrial()(study, frozen)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.WAITING]


def unwritable_checkpoint_dir(case: str, tmp_path: Path) -> contextlib.AbstractContextManager[Path | str]:
    """A ``train.checkpoint_dir`` that takes no file, for ``case`` (a read-only file system is
    mounted for the block)."""
    (tmp_path / "a-file").write_text("x")
    if case == "read-only":
        return small_tmpfs(tmp_path / "ro", read_only=True)
    return contextlib.nullcontext({
        "in /proc": "/proc/x", "a file": str(tmp_path / "a-file"), "under a file": str(tmp_path / "a-file" / "ck"),
        "missing parent": str(tmp_path / "missing" / "ck"),
    }[case])


@pytest.mark.parametrize("case", ["in /proc", "a file", "under a file", "missing parent", "read-only"])
def test_a_checkpoint_dir_that_takes_no_file_is_refused_before_anything_is_created(tmp_path, monkeypatch, capsys, case):
    """One line, exit 2, before the first trial: no database, no study, no folder."""
    monkeypatch.chdir(tmp_path)
    with unwritable_checkpoint_dir(case, tmp_path) as folder:
        code = main(["run", "--preset", "default", "--quick", "--no-report", "--set", "study.n_trials=1",
                     "--set", f"train.checkpoint_dir={folder}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "train.checkpoint_dir" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["a-file", "ro"] if case == "read-only" else ["a-file"])
