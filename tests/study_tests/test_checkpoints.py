"""Checkpoints: atomic files, the background writer, and trials that continue where they stopped."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.study import trial_attrs
from hpstudy.study.checkpoints import CheckpointStore, CheckpointWriter, atomic_save, checkpoint_root, safe_name
from hpstudy.study.data import load_splits
from hpstudy.study.errors import UserError
from hpstudy.study.models import build_model
from hpstudy.study.objective import CheckpointPolicy
from hpstudy.study.runner import run_study
from hpstudy.study.training import evaluate
from tests.conftest import QUICK_SPACE
from tests.helpers import checkpoint_store


def test_atomic_save_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "a" / "x.pt"
    atomic_save({"w": torch.arange(3), "history": [1.0, None, float("inf")], "n": 3}, path)
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["w"], torch.arange(3)) and loaded["history"][1] is None and loaded["n"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["x.pt"], "no temporary file is left"


def test_writer_writes_the_newest_state_and_discards_on_request(tmp_path):
    writer = CheckpointWriter()
    path = tmp_path / "t.pt"
    for epoch in range(20):
        writer.submit(path, {"epoch": epoch, "w": torch.full((1000,), float(epoch))})
    writer.flush()
    assert torch.load(path, weights_only=True)["epoch"] == 19
    writer.discard(path)
    assert not path.exists()
    writer.close()


def test_writer_keeps_one_waiting_state_per_file(tmp_path):
    """A pack's trials share one writer: each file gets its newest state, none is dropped for
    another's."""
    writer = CheckpointWriter()
    paths = [tmp_path / f"trial-{n}.pt" for n in range(4)]
    for epoch in range(1, 6):
        for number, path in enumerate(paths):
            writer.submit(path, {"trial": number, "epoch": torch.tensor(epoch)})
    writer.discard(paths[3])
    writer.close()
    for number, path in enumerate(paths[:3]):
        saved = torch.load(path, weights_only=True)
        assert saved["trial"] == number and int(saved["epoch"]) == 5
    assert not paths[3].exists()


def test_store_paths_and_lineages(tmp_path):
    store = CheckpointStore(tmp_path, "my study/<x>")
    assert store.folder == tmp_path / safe_name("my study/<x>") and "/" not in safe_name("a/b")
    atomic_save({"x": 1}, store.path(4))
    atomic_save({"x": 2}, store.path(11))
    assert list(store.lineages()) == [4, 11]
    assert store.load(4) == {"x": 1} and store.load(5) is None
    store.remove(4)
    assert list(store.lineages()) == [11]


def test_checkpoint_root_defaults(tmp_path, monkeypatch):
    assert checkpoint_root(None, tmp_path / "s.db") == tmp_path / "s.db.checkpoints"
    assert checkpoint_root(str(tmp_path / "ck"), tmp_path / "s.db") == tmp_path / "ck"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for folder in (tmp_path, tmp_path / "s.db.checkpoints"):  # a database server's: the same from any folder
        folder.mkdir(exist_ok=True)
        monkeypatch.chdir(folder)
        assert checkpoint_root(None, None) == tmp_path / "state" / "hpstudy" / "checkpoints"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert checkpoint_root(None, None) == Path.home() / ".local" / "state" / "hpstudy" / "checkpoints"


class InterruptAt:
    """Builds the real model and raises a real exception in its forward pass at one training step."""

    def __init__(self, exception: BaseException, *, step: int) -> None:
        self.exception, self.step, self.calls = exception, step, 0

    def __call__(self, hp, **kwargs):
        model = build_model(hp, **kwargs)
        factory = self

        def forward_hook(module, inputs):
            if module.training:
                factory.calls += 1
                if factory.calls == factory.step:
                    raise factory.exception

        model.register_forward_pre_hook(forward_hook)
        return model


FIXED_SPACE = {"lr": 0.01, "epochs": 6, "n_layers": 1, "hidden_units": 32, "dropout": 0.2, "batch_size": 128}


def test_a_retried_trial_continues_its_learning_curve_exactly(quick_config, tmp_path):
    base = dict(study__n_trials=1, study__pruner={"name": "none"}, search_space=FIXED_SPACE,
                train__scheduler={"name": "plateau", "patience": 0}, data__train_subset=None,
                train__checkpoint_every=1)
    whole = quick_config(**base, storage=f"sqlite:///{tmp_path / 'whole.db'}")
    run_study(whole)
    reference = optuna.load_study(study_name="quick", storage=whole.storage).get_trials()[0]

    cut = quick_config(**base)
    steps_per_epoch = -(-1438 // 128)
    factory = InterruptAt(KeyboardInterrupt(), step=3 * steps_per_epoch + 2)  # inside epoch 4
    first = run_study(cut, model_factory=factory)
    assert first.stop_reason == "interrupted"
    study = optuna.load_study(study_name="quick", storage=cut.storage)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]
    store = checkpoint_store(cut.storage, "quick")
    assert store.folder.name.startswith("quick-") and list(store.lineages()) == [0]

    second = run_study(cut)
    assert second.finished == 1
    retried = optuna.load_study(study_name="quick", storage=cut.storage).get_trials()[-1]
    assert retried.user_attrs[trial_attrs.RESUMED_FROM] == {"trial": 0, "epoch": 3}
    assert retried.user_attrs[trial_attrs.CURVE]["val_loss"] == pytest.approx(reference.user_attrs[trial_attrs.CURVE]["val_loss"])
    assert retried.user_attrs[trial_attrs.CURVE]["lr"] == reference.user_attrs[trial_attrs.CURVE]["lr"]
    assert retried.intermediate_values == pytest.approx(reference.intermediate_values)
    assert retried.value == pytest.approx(reference.value)
    assert list(store.lineages()) == [], "removed when finished"


def test_out_of_memory_prunes_the_trial_and_the_study_goes_on(quick_config):
    cfg = quick_config(study__n_trials=3, study__pruner={"name": "none"})
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    factory = InterruptAt(oom, step=5)
    result = run_study(cfg, model_factory=factory)
    trials = optuna.load_study(study_name="quick", storage=cfg.storage).get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].user_attrs[trial_attrs.END_REASON].startswith("out of memory at epoch")
    assert "Tried to allocate" in trials[0].user_attrs[trial_attrs.END_REASON]
    assert result.finished == 3


CPU_OUT_OF_MEMORY = """
import resource, sys
from pathlib import Path
import torch  # mapped before the limit
from hpstudy.study.cli import main
size = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
            if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (size + 600 * 2**20, size + 600 * 2**20))
sys.exit(main(sys.argv[1:]))
"""


def test_a_cpu_allocation_that_fails_prunes_the_trial(tmp_path):
    """Torch's CPU allocator says so with a bare RuntimeError: that is out of memory too (a
    process with 600 MB of address space left, a model whose weights alone take 576 MB)."""
    (tmp_path / "oom.yaml").write_text(
        "study: {name: oom, n_trials: 1}\ndata: {train_subset: 200, val_subset: 100}\n"
        "train: {device: cpu, checkpoints: false}\n"
        "search_space: {epochs: 1, n_layers: 2, hidden_units: 12000, lr: 0.01, batch_size: [64]}\n")
    url = f"sqlite:///{tmp_path / 'oom.db'}"
    done = subprocess.run([sys.executable, "-c", CPU_OUT_OF_MEMORY, "run", str(tmp_path / "oom.yaml"),
                           "--storage", url, "--no-report"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    [trial] = optuna.load_study(study_name="oom", storage=url).get_trials()
    assert trial.state == TrialState.PRUNED
    assert "can't allocate memory" in trial.user_attrs[trial_attrs.END_REASON]


@pytest.mark.parametrize("pack", [1, 3])
def test_keep_best_model_saves_the_best_trials_weights(quick_config, pack):
    """The best trial's final weights, alone or packed (where they are one member's rows of a
    stack): loaded into its model, they score its last epoch's validation loss."""
    cfg = quick_config(study__n_trials=4, train__keep_best_model=True, train__pack=pack, study__pruner={"name": "none"},
                       search_space={**QUICK_SPACE, "n_layers": 1, "epochs": 3})
    result = run_study(cfg)
    study = optuna.load_study(study_name="quick", storage=cfg.storage)
    store = checkpoint_store(cfg.storage, "quick")
    assert result.best_model == store.folder / "best-model.pt"
    saved = torch.load(result.best_model, weights_only=True)
    best = study.best_trial
    assert saved["meta"]["trial"] == best.number
    assert saved["meta"]["value"] == pytest.approx(study.best_value)
    hp = Hyperparams.from_flat(saved["meta"]["hyperparams"])
    splits = load_splits(cfg.data, seed=cfg.study.seed)
    model = build_model(hp, kind=cfg.model.kind, input_shape=splits.input_shape, n_classes=splits.n_classes)
    model.load_state_dict(saved["model"])
    loss, _accuracy = evaluate(model, splits.x_val, splits.y_val, batch_size=4096)
    assert loss == pytest.approx(best.user_attrs[trial_attrs.CURVE]["val_loss"][-1], rel=1e-4)
    assert list(store.lineages()) == []


def test_best_model_without_checkpoints_is_refused(quick_config):
    with pytest.raises(UserError, match="train.keep_best_model needs train.checkpoints: true"):
        quick_config(train__keep_best_model=True, train__checkpoints=False)


def test_studies_whose_names_read_the_same_as_paths_never_share_a_checkpoint_folder(quick_config):
    """'exp/a' and 'exp_a' are one name once made safe for a path; each study's id keeps their
    checkpoints (whose files are named by trial number) apart."""
    stores = []
    for name in ("exp/a", "exp_a"):
        cfg = quick_config(**{"study__name": name, "study__n_trials": 1})
        run_study(cfg)
        stores.append(checkpoint_store(cfg.storage, name))
    assert stores[0].study_uid != stores[1].study_uid
    assert stores[0].folder.parent == stores[1].folder.parent and stores[0].folder != stores[1].folder
    assert stores[0].folder.name.startswith("exp_a-") and stores[1].folder.name.startswith("exp_a-")


def test_checkpoint_policy_every_n_epochs():
    policy = CheckpointPolicy(every_epochs=2)
    assert [policy.due(0.01) for _ in range(2)] == [False, True]
    policy.written(0.5)
    assert [policy.due(0.01) for _ in range(2)] == [False, True]


def test_automatic_policy_keeps_checkpoints_within_their_budget():
    policy = CheckpointPolicy(every_epochs=None, budget=0.02)
    assert policy.due(0.01), "the first epoch is checkpointed: its cost is not known yet"
    policy.written(0.004)  # a checkpoint costs 4 ms: due again after 0.2 s of training
    assert [policy.due(0.05) for _ in range(4)] == [False, False, False, True]
    policy.written(0.004)
    assert policy.due(5.0), "a long epoch is checkpointed every time"


def test_a_disk_that_refuses_the_checkpoint_is_one_clear_error(tmp_path):
    """A full disk (here: the process's file-size limit, which the kernel enforces as it would a
    full one) is a one-line error naming the file, the reason and the ways out, not torch's
    "unexpected pos"; no partial file is left behind."""
    writer = CheckpointWriter()
    path = tmp_path / "ck" / "trial-0.pt"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, hard))
    try:
        writer.submit(path, {"weights": torch.zeros(1_000_000)})  # 4 MB
        with pytest.raises(UserError, match=r"cannot write .*trial-0\.pt: File too large; free space there, set "
                                            r"train\.checkpoint_dir to another disk, or run with --set train\.checkpoints=false"):
            writer.flush()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    writer.close()
    assert list(path.parent.iterdir()) == []
