"""examples/quickstart.ipynb: committed without outputs, and runs from top to bottom."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code"
    assert all(not cell.outputs and cell.execution_count is None for cell in code), \
        "clear the outputs before committing (Kernel > Restart & Clear Output)"


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(shared_datasets_dir, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("TFCNN_DATA_DIR", str(shared_datasets_dir))
    monkeypatch.setenv("TFCNN_NOTEBOOK_OUT", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Report(accuracy=" in text and "Run('" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # history, confusion matrix, worst images, the drawn digit
    assert (tmp_path / "quickstart" / "model.keras").is_file()
    assert (tmp_path / "quickstart" / "seven.png").is_file()
