"""Shared pytest fixtures, one section per area; append new sections below."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# --- datasets (tfcnn.data): the real MNIST / Fashion-MNIST copies -------------------------


@pytest.fixture(scope="session")
def shared_datasets_dir() -> Path:
    """Folder holding mnist/ and fashion_mnist/ with the official IDX files.

    `$TFCNN_DATA_DIR`, else `<repo>/../shared/datasets`; tests needing it skip when absent.
    """
    configured = os.environ.get("TFCNN_DATA_DIR")
    default = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    path = Path(configured) if configured else default
    if not (path / "mnist").is_dir():
        pytest.skip(f"real datasets not available at {path} (set TFCNN_DATA_DIR)")
    return path
