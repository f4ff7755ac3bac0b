"""hpstudy.storage: where trials live. Storage URLs, opening Optuna's RDB storage, the stored config."""

from __future__ import annotations

#: The environment variable that names the storage when --storage is not given.
STORAGE_ENV = "HPSTUDY_STORAGE"
