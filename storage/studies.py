"""Finding studies in a storage without changing it: every lookup here opens the storage read-only."""

from __future__ import annotations

import optuna

from hpstudy.storage.engine import has_optuna_tables, open_storage
from hpstudy.storage.urls import StorageLocation
from hpstudy.study.errors import UserError


def find_study(location: StorageLocation, study_name: str) -> optuna.Study | None:
    """The study called ``study_name`` (opened read-only), or None when it, or the file, is absent."""
    if not has_optuna_tables(location):
        return None
    storage = open_storage(location, mode="read")
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None


def existing_study_names(location: StorageLocation) -> list[str]:
    """Names of the studies at ``location`` (empty for a SQLite file that does not exist)."""
    if not has_optuna_tables(location):
        return []
    storage = open_storage(location, mode="read")
    return sorted(optuna.get_all_study_names(storage))


def load_existing_study(location: StorageLocation, study_name: str) -> optuna.Study:
    """Load ``study_name`` read-only, or raise UserError listing the studies that do exist."""
    study = find_study(location, study_name)
    if study is None:
        names = existing_study_names(location)
        listing = f"studies there: {', '.join(names)}" if names else "it holds no study yet"
        raise UserError(f"no study '{study_name}' in {location.display()}; {listing}")
    return study


def pick_study_name(location: StorageLocation, study_name: str | None) -> str:
    """``study_name`` when given; else the only study in the storage; else a UserError naming them."""
    if study_name:
        return study_name
    names = existing_study_names(location)
    if len(names) == 1:
        return names[0]
    if not names:
        raise UserError(f"no study in {location.display()}; start one with `hpstudy run` or pass --storage")
    raise UserError(
        f"{location.display()} holds several studies ({', '.join(names)}); pick one with --study-name"
    )
