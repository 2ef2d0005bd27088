"""The notebooks run top to bottom (nbclient) without errors and are stored without outputs.

No wall-clock assertion: tests never time things (a busy CI machine made one flaky); each
cell has nbclient's timeout as a guard against a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("0*.ipynb"))
NAMES = ["01_quickstart", "02_erase_or_hide", "03_ssiuu_robustness", "04_bring_your_own_model",
         "05_real_model"]


def test_the_notebooks_exist_without_outputs():
    assert [p.stem for p in NOTEBOOKS] == NAMES
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert code, path.name
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory, cache_folder, tiny_org, tiny_oracle):
    """Kernels share the test session's organism cache, run single-threaded and import this
    checkout's package (not whichever one the environment installed)."""
    names = ("NEURONSCOPE_CACHE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONPATH")
    saved = {k: os.environ.get(k) for k in names}
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, saved["PYTHONPATH"]) if p)
    os.environ.update(NEURONSCOPE_CACHE=str(cache_folder), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                      PYTHONPATH=path)
    yield tmp_path_factory.mktemp("notebooks")
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, notebook_env, request):
    if path.stem == "05_real_model":
        request.getfixturevalue("smollm2")  # converts SmolLM2 into the kernels' cache (or skips)
    notebook = nbformat.read(path, as_version=4)
    folder = notebook_env / path.stem
    folder.mkdir()
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert not errors
