"""hpstudy.storage: where trials live. Storage URLs, opening Optuna's RDB storage, the stored config."""

from __future__ import annotations
