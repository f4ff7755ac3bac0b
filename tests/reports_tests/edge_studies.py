"""The studies a report must explain rather than draw: empty, nothing completed, one trial, one
parameter, fixed parameters only; and one whose every user-controlled string is an XSS attempt."""

from __future__ import annotations

from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from tests.reports_tests.builders import DROPOUT, LR, falling, hp_study, hp_trial

XSS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "</script>")
XSS_NAME = f"xss {XSS[0]} {XSS[1]} {XSS[2]}"
XSS_SWEEP = f"sweep {XSS[0]}"

#: name -> sentences the report must show for that study
EXPLAINED = {
    "empty": ["The study has no trials yet"],
    "nothing-completed": ["No trial completed (3 pruned, 1 failed, 4 in all)"],
    "one-trial": ["Importances need at least 10 completed trials", "A contour needs at least 3 completed trials"],
    "one-param": ["Only one parameter (lr) is searched; this plot needs 2."],
    "fixed-only": ["No parameter was searched: every trial used the same fixed values"],
    "diverged-at-once": ["No curve to draw: every epoch the trials recorded ended with a validation loss that is not "
                         "a finite number (they diverged).", "Nothing to suggest yet: suggestions need completed trials."],
}


def add_edge_studies(url: str) -> list[str]:
    """Create the studies of ``EXPLAINED`` at ``url``; returns their names."""
    dists = {"lr": LR, "dropout": DROPOUT}
    space = {"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "dropout": {"low": 0.0, "high": 0.5}}
    hp_study(url, "empty", [], space=space)
    hp_study(
        url,
        "nothing-completed",
        [
            hp_trial({"lr": 0.01, "dropout": 0.1}, dists, val_loss=[2.0, 1.5], epochs_requested=8, state=TrialState.PRUNED),
            hp_trial({"lr": 0.02, "dropout": 0.2}, dists, val_loss=[2.1, 1.9], epochs_requested=8, state=TrialState.PRUNED),
            hp_trial({"lr": 50.0 / 1000, "dropout": 0.3}, dists, val_loss=[2.3, None], epochs_requested=8,
                     state=TrialState.PRUNED),  # diverged: the last loss was not finite, so no value
            hp_trial({"lr": 0.03, "dropout": 0.4}, dists, val_loss=[2.2], epochs_requested=8, state=TrialState.FAIL),
        ],
        space=space,
    )
    hp_study(url, "one-trial", [hp_trial({"lr": 0.01, "dropout": 0.1}, dists, val_loss=falling(2.0, 0.3, 6))], space=space)
    hp_study(
        url,
        "one-param",
        [hp_trial({"lr": 10 ** -(1 + i / 4)}, {"lr": LR}, val_loss=falling(2.0, 0.1 + i / 20, 5)) for i in range(12)],
        space={"lr": space["lr"]},
    )
    hp_study(
        url,
        "fixed-only",
        [hp_trial({}, {}, val_loss=falling(2.0, 0.2 + i / 50, 4)) for i in range(4)],
        space={"lr": 0.01, "dropout": 0.2},
    )
    hp_study(
        url,
        "diverged-at-once",
        [hp_trial({"lr": 0.09, "dropout": 0.1 * i}, dists, val_loss=[None], epochs_requested=8, state=TrialState.PRUNED)
         for i in range(2)],
        space=space,
    )
    return list(EXPLAINED)


def add_xss_studies(url: str) -> list[str]:
    """Two studies whose names, param names, categorical choices, trial attr keys and values and
    stored config all carry the strings of ``XSS`` (the second sampled at random, so the report
    compares search strategies), and a sweep of a param named and valued with them; returns their
    names."""
    dists = {
        f"lr{XSS[0]}": FloatDistribution(1e-4, 1e-1, log=True),
        XSS[1]: CategoricalDistribution(list(XSS)),
        XSS[2]: FloatDistribution(0.0, 1.0),
    }
    names = [XSS_NAME, XSS[1]]
    for offset, name in enumerate(names):
        trials = [
            hp_trial(
                {f"lr{XSS[0]}": 10 ** -(1 + i / 5), XSS[1]: XSS[i % 3], XSS[2]: (i * 7 % 12) / 12},
                dists,
                val_loss=falling(2.0, 0.1 + ((i + offset) * 5 % 12) / 20, 4),
                extra_attrs={XSS[1]: XSS[0], "device": XSS[0]},
            )
            for i in range(12)
        ]
        trials.append(hp_trial({f"lr{XSS[0]}": 0.05, XSS[1]: XSS[2], XSS[2]: 0.5}, dists, val_loss=[2.0, 1.8],
                               epochs_requested=4, state=TrialState.PRUNED))
        sampler = {"study.sampler": {"name": "random" if offset else "tpe"}}
        hp_study(url, name, trials, config_values={"data.root": XSS[1], **sampler})
    sweep = {XSS[1]: CategoricalDistribution(list(XSS)), "seed": CategoricalDistribution([0, 1])}
    repeats = [
        hp_trial({XSS[1]: XSS[i % 3], "seed": i // 3}, sweep, val_loss=falling(2.0, 0.2 + (i % 3) / 10 + i / 100, 3))
        for i in range(6)
    ]
    hp_study(url, XSS_SWEEP, repeats)
    return [*names, XSS_SWEEP]
