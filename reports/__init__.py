"""hpstudy.reports: what a person sees. Tables, exports, figures and the HTML report.

Reports read studies through Optuna and the user attrs named in ``hpstudy.study.trial_attrs``;
they never import the training code.
"""

from __future__ import annotations
