"""hpstudy.search_spaces: what may be tried. Declarative parameter specs, search spaces and presets.

Nothing here imports torch: a space can be read, validated and listed without the training stack.
"""

from __future__ import annotations

from hpstudy.search_spaces.catalog import ACTIVATIONS, INITIALIZERS, OPTIMIZERS, PARAMETERS
from hpstudy.search_spaces.hyperparams import Hyperparams
from hpstudy.search_spaces.params import CategoricalParam, Fixed, FloatParam, IntParam, ParamSpec
from hpstudy.search_spaces.space import SearchSpace

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "OPTIMIZERS",
    "PARAMETERS",
    "CategoricalParam",
    "Fixed",
    "FloatParam",
    "Hyperparams",
    "IntParam",
    "ParamSpec",
    "SearchSpace",
]
