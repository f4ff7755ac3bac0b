"""Ctrl-C pressed twice: real SIGINTs sent to this process, the second from inside the cleanup."""

from __future__ import annotations

import os
import signal

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.engine import Engine

from hpstudy.study import trial_attrs
from hpstudy.study.interrupts import CleanupShield
from hpstudy.study.models import build_model
from hpstudy.study.runner import run_study


def ctrl_c(signum: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), signum)  # Python runs the handler at its next instruction


def test_the_shield_lets_one_more_ctrl_c_pass_and_stops_at_the_next(capsys):
    done = []
    try:
        with CleanupShield(what="tidying up"):
            ctrl_c()
            done.append("after the second Ctrl-C")
    except KeyboardInterrupt:
        pytest.fail("the shield let the Ctrl-C through")
    assert done == ["after the second Ctrl-C"]
    assert "hpstudy: tidying up; a moment (press Ctrl-C again to stop at once)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored

    with pytest.raises(KeyboardInterrupt):
        with CleanupShield(what="tidying up"):
            ctrl_c()
            ctrl_c()
            done.append("never")
    assert done == ["after the second Ctrl-C"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class SecondCtrlC:
    """Once armed, sends the second Ctrl-C just before the first SQL statement that starts with
    ``statement``: inside whatever the run does after the first one."""

    def __init__(self, statement: str, signum: int = signal.SIGINT) -> None:
        self.statement, self.signum, self.armed, self.sent = statement, signum, False, False

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.armed and not self.sent and statement.lstrip().upper().startswith(self.statement):
            self.sent = True
            ctrl_c(self.signum)

    def first(self) -> None:
        self.armed = True
        ctrl_c(self.signum)


class SigtermBeforeTheRun(Exception):
    """Raised by the SIGTERM handler this test had in place before the run."""


def sigterm_before_the_run(signum, frame):
    raise SigtermBeforeTheRun("a SIGTERM reached the handler from before the run: the cleanup was not shielded")


@pytest.mark.parametrize(("pack", "statement", "signum"), [
    (1, "UPDATE TRIALS", signal.SIGINT),  # while Optuna fails the interrupted trial: it stays running
    (1, "INSERT INTO TRIALS ", signal.SIGINT),  # while the run queues its retry
    (3, "INSERT INTO TRIALS ", signal.SIGINT),  # while a pack queues its trials again
    (1, "INSERT INTO TRIALS ", signal.SIGTERM),  # SIGTERM twice
    (3, "INSERT INTO TRIALS ", signal.SIGTERM),
])
def test_a_second_ctrl_c_during_the_cleanup_still_queues_the_trial_again(quick_config, capsys, pack, statement, signum):
    cfg = quick_config(study__n_trials=6, train__pack=pack, search_space__epochs={"low": 3, "high": 5})
    second = SecondCtrlC(statement, signum)
    before = signal.signal(signal.SIGTERM, sigterm_before_the_run)  # not the default, which would end pytest
    built = []

    def model_factory(*args, **kwargs):  # Ctrl-C while the second trial builds its model
        built.append(1)
        if len(built) == 2:
            second.first()
        return build_model(*args, **kwargs)

    class CtrlCAfterTheFirstTrial:  # a pack builds its members itself: Ctrl-C once one has ended
        def started(self, *args, **kwargs):
            pass

        def trial_finished(self, study, trial):
            second.first()

    event.listen(Engine, "before_cursor_execute", second)
    try:
        result = run_study(cfg, model_factory=model_factory, observer=CtrlCAfterTheFirstTrial() if pack > 1 else None)
        # the run leaves the handlers as it found them
        assert signal.getsignal(signal.SIGTERM) is sigterm_before_the_run
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C cut the cleanup short")
    finally:
        event.remove(Engine, "before_cursor_execute", second)
        signal.signal(signal.SIGTERM, before)
    assert second.sent and result.stop_reason == ("terminated" if signum == signal.SIGTERM else "interrupted")
    assert "again; a moment (press Ctrl-C again to stop at once)" in capsys.readouterr().err

    trials = optuna.load_study(study_name=cfg.study.name, storage=cfg.storage).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert failed and len(waiting) == len(failed)  # each interrupted trial queued again, once
    for retry in waiting:
        original = next(t for t in failed if t.number == trial_attrs.lineage(retry))
        assert retry.params == original.params
