"""notebooks/: one per section, committed without outputs, each executed end to end with its quick budget."""

from __future__ import annotations

import json
import time

import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SECTIONS = {"1_backprop_facts", "2_4_toy_convnet", "2_5_mnist_classifiers", "2_5_4_tuning", "2_6_autoencoder"}


def test_one_notebook_per_section_committed_without_outputs():
    assert {p.stem for p in NOTEBOOKS} == SECTIONS
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} carries outputs"
        sources = ["".join(c["source"]) for c in nb["cells"]]
        assert any("QUICK = True" in s for s in sources), f"{path.name}: the quick budget must be the default"
        assert any("verdicts(" in s for s in sources[-2:]), f"{path.name} must end with what held"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_with_the_quick_budget(path, real_mnist, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.perf_counter() - start
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    from kerasdl import quiet

    chatter = [line for o in outputs if o.get("output_type") == "stream"
               for line in o["text"].splitlines() if quiet.NOISE.search(line)]
    assert not chatter, chatter[:3]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1, "no figure shown inline"
    verdict_tables = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})
                      and "| claim | measured evidence | verdict |" in o["data"]["text/markdown"]]
    assert verdict_tables and any(v in verdict_tables[-1] for v in ("**holds**", "**partly**", "**does not hold**"))
    assert (tmp_path / "runs" / "notebooks-quick").is_dir()  # quick runs stay apart from the real ones
    assert not (tmp_path / "saved_models").exists()
    print(f"{path.name}: {seconds:.1f} s")
