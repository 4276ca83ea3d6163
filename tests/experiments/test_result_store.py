"""Tests of the result store, the mean +- std tables and the figures (paper Table 4, Figures 6-8)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from monai_cmri.experiments.composition import ADDITIVE, REAL_ONLY, REAL_SYNTHETIC
from monai_cmri.experiments.plots import DPI, PANEL, additive_figure, substitution_figure
from monai_cmri.experiments.results import ResultStore, config_key
from monai_cmri.experiments.tables import markdown_table, summarize, write_table


def config(**overrides) -> dict:
    base = {"experiment": "substitution", "condition": REAL_ONLY, "fraction": 0.3, "seed": 0,
            "checkpoints": {"flow_stage2": "ab" * 32}}
    return {**base, **overrides}


def test_config_key_is_stable_and_specific():
    key = config_key(config())
    assert key.startswith("substitution-") and len(key) == len("substitution-") + 16
    assert config_key(dict(reversed(list(config().items())))) == key
    assert config_key(config(fraction=0.1 + 0.2)) == key
    assert config_key(config(seed=1)) != key
    assert config_key(config(checkpoints={"flow_stage2": "cd" * 32})) != key
    assert config_key(config(fraction=np.float32(0.5))) == config_key(config(fraction=0.5))


def test_write_is_atomic_and_complete(tmp_path):
    store = ResultStore(tmp_path / "results")
    assert not store.done(config())
    path = store.write({"config": config(), "metrics": {"auroc": np.float64(0.75)}, "timing": {"seconds": 1.5}})
    assert store.done(config_key(config())) and store.done(config())
    assert [p.name for p in (tmp_path / "results").iterdir()] == [path.name]  # no temporary left
    record = json.loads(path.read_text())
    assert record["config"] == config() and record["metrics"] == {"auroc": 0.75}
    assert record["seed"] == 0 and record["key"] == config_key(config()) and record["timing"] == {"seconds": 1.5}
    assert store.records() == [record] and len(store) == 1
    with pytest.raises(ValueError, match="metrics"):
        store.write({"config": config(seed=1)})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        store.write({"config": config(seed=2), "metrics": {"auroc": object()}})
    assert len(store) == 1


def records(values: dict) -> list[dict]:
    """Records of ``{(condition, fraction, seed): metrics}``."""
    return [{"key": str(i), "config": config(condition=c, fraction=f, seed=s), "metrics": m}
            for i, ((c, f, s), m) in enumerate(values.items())]


def test_tables_mean_and_std_against_numpy(tmp_path):
    rng = np.random.default_rng(0)
    values = {(c, f, s): {"auroc": {"fastmri": rng.random(), "external": rng.random()}}
              for c in (REAL_ONLY, REAL_SYNTHETIC) for f in (0.5, 1.0) for s in range(5)}
    rows = summarize(records(values), over=("seed",))
    assert len(rows) == 8
    for row in rows:
        expected = [m["auroc"][row["test_set"]] for (c, f, _), m in values.items()
                    if c == row["condition"] and f == row["fraction"]]
        assert row["n"] == 5
        assert row["mean"] == pytest.approx(np.mean(expected), abs=1e-12)
        assert row["std"] == pytest.approx(np.std(expected, ddof=1), abs=1e-12)
    # Seeds and test sets pooled, as for Table 4.
    pooled = summarize(records(values), over=("seed", "test_set"))
    first = [v for (c, f, _), m in values.items() if (c, f) == (REAL_ONLY, 0.5) for v in m["auroc"].values()]
    assert pooled[0]["n"] == 10 and pooled[0]["std"] == pytest.approx(np.std(first, ddof=1), abs=1e-12)
    single = summarize(records({(REAL_ONLY, 0.5, 0): {"auroc": 0.6}}))
    assert single[0]["n"] == 1 and math.isnan(single[0]["std"])
    assert "0.600 |" in markdown_table(single, columns=["fraction"])

    md, table = write_table(rows, tmp_path / "tables" / "substitution")
    lines = md.read_text().splitlines()
    assert lines[0] == "| experiment | condition | fraction | test_set | AUROC | n |"
    assert f"{rows[0]['mean']:.3f} ± {rows[0]['std']:.3f}" in lines[2]
    with open(table, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert len(read) == 8 and float(read[3]["std"]) == rows[3]["std"] and float(read[3]["mean"]) == rows[3]["mean"]


def test_figures_are_pngs_of_one_panel_per_test_set(tmp_path):
    rng = np.random.default_rng(1)
    values = {(c, f, s): {"auroc": {"fastmri": 0.8 + 0.1 * rng.random(), "external": 0.7 + 0.1 * rng.random()}}
              for c in (REAL_ONLY, REAL_SYNTHETIC) for f in np.round(np.arange(0, 1.01, 0.1), 1) for s in range(3)
              if not (c == REAL_ONLY and f == 0.0)}
    values.update({(ADDITIVE, g, s): {"auroc": {"fastmri": 0.85, "external": 0.75}}
                   for g in (0.5, 1.0) for s in range(3)})
    rows = summarize(records(values))
    path = substitution_figure(rows, tmp_path / "figures" / "substitution.png", title="Figure 6")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (round(2 * PANEL[0] * DPI), round(PANEL[1] * DPI))
    path = additive_figure(rows, tmp_path / "figures" / "additive.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (round(2 * PANEL[0] * DPI), round(PANEL[1] * DPI))
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["additive.png", "substitution.png"]
    one = [row for row in rows if row["test_set"] == "fastmri"]
    with Image.open(substitution_figure(one, tmp_path / "one.png")) as image:
        assert image.size == (round(PANEL[0] * DPI), round(PANEL[1] * DPI))
    with pytest.raises(ValueError, match="no 100 % real"):
        substitution_figure([row for row in one if row["fraction"] != 1.0], tmp_path / "bad.png")
