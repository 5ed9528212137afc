"""notebooks/results.ipynb runs top to bottom on a study's results and reproduces the workflow's tables."""

from __future__ import annotations

import pytest

from workflow_helpers import REPO


@pytest.mark.workflow
def test_results_notebook_runs_on_the_ci_study(ci_study, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    workdir, _, _ = ci_study
    monkeypatch.setenv("ATTNLAB_RESULTS", str(workdir / "results"))
    notebook = nbformat.read(REPO / "notebooks" / "results.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    printed = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    )
    assert f"results folder: {workdir / 'results'}" in printed
    assert "accuracy table reproduced" in printed and "robustness table reproduced" in printed
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the accuracy and robustness figures
