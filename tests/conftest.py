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


# --- trained models (evaluate, predict, export, serve) ---------------------------------------


@pytest.fixture(scope="session")
def trained_mnist_run(shared_datasets_dir, tmp_path_factory) -> Path:
    """A run directory holding the tutorial network after one epoch on full MNIST (~98%).

    Trained once per test session, in-process, with a fixed seed (about 15-25 s).
    """
    from tfcnn.core.config import TrainConfig
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import train_run

    run_dir = tmp_path_factory.mktemp("trained") / "mnist-tutorial"
    config = TrainConfig(epochs=1, seed=0, data_dir=str(shared_datasets_dir))
    train_run(config, run_dir, Hooks())
    return run_dir



# --- serving (tfcnn.serve) -----------------------------------------------------------------


@pytest.fixture(scope="session")
def served():
    """A small untrained digit model wrapped for serving under the name "digits"."""
    from tfcnn.models.network import build_model
    from tfcnn.serve.model import serve_model

    model = build_model("4C3-P2-D10", (28, 28, 1), tuple("0123456789"), seed=0,
                        prepare="mnist", dataset="mnist")
    return serve_model(model, "digits")
