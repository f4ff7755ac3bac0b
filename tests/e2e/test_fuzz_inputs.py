"""Issue 17: property-based hostile input. Hypothesis generates config files, ``--set`` values,
storage URLs and ``--params`` JSON (wrong types, huge numbers, NaN and inf, deep nesting, aliases,
unicode, long strings) and every call of the CLI, in process, must end with exit 0 or 2, never a
traceback; an exit 2 says one line and leaves the folder it ran in as it was.

The runs are derandomized (no example database), so CI sees the same cases every time. A larger
run by hand, of random cases: ``HPSTUDY_FUZZ_EXAMPLES=2000 pytest tests/e2e/test_fuzz_inputs.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpstudy.search_spaces.catalog import PARAMETERS
from hpstudy.storage.engine import open_storage
from hpstudy.storage.urls import parse_storage_url
from hpstudy.study.cli import main
from hpstudy.study.config import load_config
from hpstudy.study.runner import create_if_missing
from tests.conftest import QUICK_SPACE

EXAMPLES = int(os.environ.get("HPSTUDY_FUZZ_EXAMPLES", "0")) or None


def fuzz(examples: int) -> settings:
    """Settings without an example database: ``examples`` derandomized cases, or HPSTUDY_FUZZ_EXAMPLES
    random ones (a run by hand finds new cases each time)."""
    return settings(max_examples=EXAMPLES or examples, deadline=None, derandomize=EXAMPLES is None, database=None,
                    print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Config keys the generated input aims at (and a few that do not exist).
KEYS = (
    "study.name", "study.n_trials", "study.timeout", "study.seed", "study.budget_epochs", "study.metric",
    "study.direction", "study.heartbeat_interval", "study.grace_period", "study.sampler", "study.sampler.name",
    "study.sampler.options", "study.sampler.options.n_startup_trials", "study.sampler.options.gamma",
    "study.sampler.options.n_ei_candidates", "study.pruner", "study.pruner.name", "study.pruner.options",
    "study.pruner.options.n_warmup_steps", "study.pruner.options.max_resource", "storage", "data.dataset",
    "data.val_fraction", "data.train_subset", "data.root", "model.kind", "model.per_layer_units", "train.device",
    "train.pack", "train.amp", "train.checkpoint_dir", "train.early_stopping.patience", "train.scheduler.factor",
    "search_space", "search_space.lr", "search_space.lr.high", "search_space.dropout.step", "variants",
    "variants.a", "study", "preset", "x", "study.n_trials.x",
    *(f"search_space.{name}" for name in PARAMETERS),
)
WORDS = ("tpe", "grid", "cmaes", "random", "qmc", "median", "hyperband", "threshold", "cnn", "mlp", "adam", "sgd",
         "relu", "auto", "cpu", "cuda:0", "digits", "a", "low", "high", "step", "log", "choices", "name", "options",
         "val_loss", "maximize", "default", "lr-sweep", "n_startup_trials", "gamma", "percentile", "sqlite:///x.db")
NUMBERS = st.one_of(
    st.integers(-3, 300), st.integers(-(10**30), 10**30), st.sampled_from([0, 1, 2**31, 2**32, 2**53 + 1, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e-300, 5e-324, 1e300, 0.5, 1e-3, -0.0]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), NUMBERS, st.sampled_from(WORDS), st.text(max_size=12),
    st.text(min_size=300, max_size=3_000), st.sampled_from(list(PARAMETERS)),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.one_of(st.sampled_from(WORDS), st.sampled_from(list(PARAMETERS)), st.text(max_size=6), st.integers(0, 3)),
        inner, max_size=4),
    max_leaves=10,
)
#: YAML no generator of Python values writes: aliases, loops, depth, tags, impossible dates.
LAUGHS = "{a: &a [x, x, x, x, x, x, x, x, x, x], " + ", ".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)) + "}"
HOSTILE = st.one_of(
    st.sampled_from([LAUGHS, "&a [*a]", "&a {b: *a}", "!!python/object/apply:os.system [ls]", "!!binary aGk=",
                     "2020-13-45", "!!set {a, b}", "{<<: [*x]}", "[1, 2", "{a: 1, a: 2}", "\t- x", "\x00", "---\n---",
                     "!!float nan", "{? [1, 2] : 3}", "*nope", "1" + "0" * 5_000, "[{low: 1, high: .inf, step: .nan}]"]),
    st.integers(1, 6_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 3_000).map(lambda depth: "{a: " * depth + "1" + "}" * depth),
    st.text(max_size=40),
)
YAML_TEXT = st.one_of(VALUES.map(lambda value: yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()),
                      HOSTILE)


def listing(folder: Path) -> list[str]:
    """Every path under ``folder``, relative to it."""
    return sorted(str(Path(root, name).relative_to(folder)) for root, dirs, files in os.walk(folder)
                  for name in (*dirs, *files))


@contextlib.contextmanager
def fresh_folder() -> Iterator[Path]:
    """An empty folder of its own for one example."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        yield Path(folder)


def assert_clean_exit(argv: Sequence[str], folder: Path) -> int:
    """Run ``hpstudy ARGV`` in ``folder``: exit 0 or 2, no traceback; an exit 2 is one line on
    stderr and leaves the folder as it was."""
    before = listing(folder)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(folder), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    errors = err.getvalue()
    shown = [arg[:200] for arg in argv]
    assert code in (0, 2), f"exit {code} for {shown}:\n{errors[-3000:]}"
    assert "Traceback" not in errors, f"{shown}:\n{errors[-3000:]}"
    if code == 2:
        assert errors.count("\n") == 1 and errors.startswith("hpstudy"), f"{shown}: {errors[:3000]!r}"
        assert len(errors) < 1_000, f"{shown}: a message of {len(errors)} characters: {errors[:300]!r}"
        assert listing(folder) == before, f"{shown} created {set(listing(folder)) - set(before)}"
    return code


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A folder holding a SQLite store with one study ("quick") and no trials, made without training."""
    folder = tmp_path_factory.mktemp("fuzz-study")
    url = f"sqlite:///{folder / 'study.db'}"
    cfg = load_config(preset="default", values={"storage": url, "study.name": "quick", "search_space": QUICK_SPACE})
    create_if_missing(open_storage(parse_storage_url(url), mode="create"), cfg)
    return folder, url


@fuzz(60)
@given(sections=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4), hostile=st.none() | HOSTILE)
def test_config_files(sections, hostile):
    """A config file of generated sections (dotted keys nested), or hostile YAML text."""
    tree: dict = {}
    for key, value in sections.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[leaf] = value
    text = hostile if hostile is not None else yaml.safe_dump(tree, allow_unicode=True)
    with fresh_folder() as folder:
        (folder / "study.yaml").write_text(text, encoding="utf-8")
        assert_clean_exit(["run", "study.yaml", "--print-config"], folder)


FLAGS = st.lists(st.sampled_from([
    ("--n-trials", "5"), ("--seed", "1"), ("--timeout", "inf"), ("--timeout", "nan"), ("--timeout", "-1"),
    ("--study-name", "a"), ("--device", "cpu"), ("--pack", "2"), ("--budget-epochs", "9"), ("--repeats", "2"),
    ("--preset", "lr-sweep"), ("--quick",), ("--storage", "sqlite:///s.db"),
]), max_size=2, unique=True)


@fuzz(120)
@given(sets=st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=10), YAML_TEXT), min_size=1, max_size=3),
       flags=FLAGS)
def test_set_values(sets, flags):
    """``--set KEY=VALUE`` with generated values, beside flags that may set the same keys."""
    argv = ["run", "--print-config", *(part for flag in flags for part in flag)]
    for key, text in sets:
        argv += ["--set", f"{key}={text}"]
    with fresh_folder() as folder:
        assert_clean_exit(argv, folder)


HOST = "127.0.0.1"  # never another host
ODD = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), max_size=12)
SQLITE_URLS = st.builds(
    lambda slashes, name, query: f"sqlite:{slashes}{name}{query}",
    st.sampled_from(["///", "//", "////", "/"]),
    st.one_of(st.sampled_from(["x.db", "a b.db", "x.db-wal", "x.db-journal", ".", "", "d/x.db", "ü.db",
                               "x.db?", "x.db#f", "%00.db", "x.db%00-wal"]), ODD),
    st.one_of(st.just(""), st.sampled_from(["?timeout=abc", "?timeout=-1", "?mode=ro&uri=true", "?mode=rwc",
                                            "?uri=true", "?check_same_thread=x", "?a=1&a=2", "?password=s3cret"]),
              ODD.map(lambda text: f"?{text}")),
)
POSTGRES_URLS = st.builds(
    lambda scheme, user, port, db, query: f"{scheme}://{user}@{HOST}{port}/{db}{query}",
    st.sampled_from(["postgresql", "postgresql+psycopg", "postgresql+psycopg2", "postgres", "postgresql+asyncpg"]),
    st.sampled_from(["postgres", "nobody", "u:p@ss", "u%40x", ""]),
    st.one_of(st.just(""), st.integers(-5, 70_000).map(lambda port: f":{port}"), ODD.map(lambda text: f":{text}")),
    st.one_of(st.just("hpstudy_fuzz_absent"), ODD.map(lambda text: f"hpstudy_fuzz_absent_{text}")),
    st.sampled_from(["", "?connect_timeout=1", "?connect_timeout=abc", "?sslmode=bogus", "?password=x&port=1"]),
)
OTHER_URLS = st.one_of(st.sampled_from(["", "sqlite://", "foo://x", "mysql+pymysql://u@127.0.0.1/db",
                                        "sqlite+aiosqlite:///x.db", "sqlite+pysqlcipher:///x.db", "x.db",
                                        "postgresql://", "postgresql://@/"]), st.text(max_size=30))


@fuzz(60)
@given(url=st.one_of(SQLITE_URLS, POSTGRES_URLS, OTHER_URLS))
def test_storage_urls(url):
    """``hpstudy list --storage URL`` with odd SQLite paths and queries and odd PostgreSQL ports."""
    with fresh_folder() as folder:
        assert_clean_exit(["list", "--storage", url], folder)


PARAMS = st.one_of(
    st.dictionaries(st.sampled_from(list(PARAMETERS)) | st.text(max_size=8), SCALARS, max_size=5),
    st.lists(st.dictionaries(st.sampled_from(list(QUICK_SPACE)), NUMBERS, max_size=3), max_size=3),
    VALUES,
)


@fuzz(50)
@given(text=st.one_of(PARAMS.map(lambda params: json.dumps(params, allow_nan=True)), HOSTILE))
def test_enqueue_params(text, study_folder):
    """``hpstudy enqueue --params JSON`` against a real study."""
    folder, url = study_folder
    assert_clean_exit(["enqueue", "--study-name", "quick", "--storage", url, "--params", text], folder)
