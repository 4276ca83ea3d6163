"""Tests of run_grid (a killed grid resumes without rerunning what finished, STYLE 12) and of the grids."""

from __future__ import annotations

import pytest

from monai_cmri.experiments.composition import REAL_ONLY, REAL_SYNTHETIC
from monai_cmri.experiments.fractions import FRACTIONS
from monai_cmri.experiments.grids import SEEDS, additive_grid, real_vs_synthetic_grid, substitution_grid
from monai_cmri.experiments.results import ResultStore, config_key
from monai_cmri.experiments.runner import run_grid

GRID = [{"experiment": "additive", "fraction": f, "seed": s} for f in (0.1, 0.2, 0.3) for s in (0, 1)]


class Killed(RuntimeError):
    pass


def scorer(calls: list, fail_at: int | None = None):
    def train_and_score(config: dict) -> dict:
        calls.append(dict(config))
        if len(calls) == fail_at:
            raise Killed("killed")
        config["fraction"] = -1  # a copy: the grid's configuration must not change
        return {"auroc": 0.5 + len(calls) / 100, "steps": 3}
    return train_and_score


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    store = ResultStore(tmp_path / "results")
    calls: list = []
    with pytest.raises(Killed):
        run_grid(GRID, scorer(calls, fail_at=3), store, progress=False)
    assert len(calls) == 3 and len(store) == 2
    assert all(store.done(config) for config in GRID[:2]) and not store.done(GRID[2])
    first = {record["key"]: record for record in store.records()}

    calls.clear()
    records = run_grid(GRID, scorer(calls), store, progress=False)
    assert calls == GRID[2:]  # the finished two are skipped, the failed one reruns
    assert [record["config"] for record in records] == GRID
    assert [record["key"] for record in records] == [config_key(config) for config in GRID]
    for record in records[:2]:
        assert record == first[record["key"]]  # untouched
    timing = records[-1]["timing"]
    assert timing["seconds"] >= 0 and timing["started"] <= timing["finished"]
    assert records[-1]["metrics"] == {"auroc": 0.5 + 4 / 100, "steps": 3} and records[-1]["seed"] == 1

    calls.clear()
    assert run_grid(GRID + GRID[:1], scorer(calls), store, progress=False) == records and calls == []


def test_duplicates_run_once_and_bad_metrics_write_nothing(tmp_path):
    store = ResultStore(tmp_path / "results")
    calls: list = []
    run_grid([GRID[0], dict(GRID[0])], scorer(calls), store, progress=True)
    assert len(calls) == 1 and len(store) == 1
    with pytest.raises(ValueError, match="not a dict"):
        run_grid([GRID[1]], lambda config: 0.5, store, progress=False)
    assert not store.done(GRID[1])


def test_grids_train_each_set_once_and_key_real_only_runs_by_real_inputs():
    real, synthetic = {"train_sha256": "aa"}, {"flow_stage2_sha256": "bb", "guidance_scale": 2.0}
    grid = substitution_grid(real, synthetic)
    assert len(grid) == (10 + 10) * len(SEEDS)
    assert {c["fraction"] for c in grid if c["condition"] == REAL_ONLY} == set(FRACTIONS)
    assert {c["fraction"] for c in grid if c["condition"] == REAL_SYNTHETIC} == {0.0, *FRACTIONS[:-1]}
    assert grid[0]["fraction"] == 1.0 and len({config_key(c) for c in grid}) == len(grid)
    assert all("synthetic" not in c for c in grid if c["condition"] == REAL_ONLY)
    other = substitution_grid(real, {**synthetic, "flow_stage2_sha256": "cc"})
    same = {config_key(c) for c in grid} & {config_key(c) for c in other}
    assert len(same) == 10 * len(SEEDS)  # the real-only runs, which do not use the generator
    assert len(additive_grid(real, synthetic, seeds=[0])) == 10
    table4 = real_vs_synthetic_grid(["axflair", "AXT2"], real, synthetic, seeds=[0, 1], fixed={"recipe": "x"})
    assert [(c["sequence"], c["seed"], c["recipe"]) for c in table4] == [
        ("AXFLAIR", 0, "x"), ("AXFLAIR", 1, "x"), ("AXT2", 0, "x"), ("AXT2", 1, "x")]
    with pytest.raises(ValueError, match="replace"):
        additive_grid(real, synthetic, fixed={"seed": 3})
