"""The planner's dscnn and resnet families have search spaces (declared where they are registered); `edgekd
search` draws from every searched family in turn, and each drawn member is costed and fits the target before it
is a trial."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from edgekd.data import get_spec
from edgekd.errors import EdgekdError
from edgekd.search import SearchSettings, _draw_order, _sample_trials
from edgekd.students import FAMILIES, StudentConfig, build_student, model_input_shape, register_family
from edgekd.targets import load_target

RESOLUTIONS = {None, 24, 20, 16, 12}


@pytest.fixture(autouse=True)
def _own_cache(cost_cache: Path) -> Path:
    return cost_cache


def test_dscnn_and_resnet_spaces_hold_their_grids_within_bounds():
    dscnn, resnet = FAMILIES["dscnn"], FAMILIES["resnet"]
    for fam in (dscnn, resnet):  # the planner's grid is inside the space: the search can reach its pick
        assert set(fam.space) == set(fam.grid)
        assert all(set(fam.grid[k]) <= set(fam.space[k]) for k in fam.grid)
        assert set(fam.space["resolution"]) == RESOLUTIONS
    assert min(dscnn.space["width"]) == 8 and max(dscnn.space["width"]) == 96
    assert set(dscnn.space["depth"]) == set(range(2, 9))
    assert min(resnet.space["width"]) == 8 and max(resnet.space["width"]) == 48
    assert set(resnet.space["depth"]) == set(resnet.space["stages"]) == {1, 2, 3}
    assert len(dscnn.candidates((1, 28, 28), space=True)) == 12 * 7 * 5
    assert len(resnet.candidates((1, 28, 28), space=True)) == 8 * 3 * 3 * 5
    assert len(dscnn.candidates((1, 8, 8), space=True)) == 12 * 7  # every resolution cap >= 8 px: no cap
    assert len(dscnn.candidates((1, 28, 28))) == 7 * 5 * 3  # the planner's grid is unchanged


def test_register_family_refuses_a_space_that_is_not_its_grids():
    before = FAMILIES["resnet"]
    with pytest.raises(EdgekdError, match=r"parameters \['depth', 'resolution', 'width'\] differ"):
        register_family(replace(before, space={"width": (8,), "depth": (1,), "resolution": (None,)}))
    with pytest.raises(EdgekdError, match=r"leaves out grid values \{'stages': \[2\]\}"):
        register_family(replace(before, space=before.space | {"stages": (3,)}))
    assert FAMILIES["resnet"] is before


@pytest.mark.parametrize("family", ["dscnn", "resnet"])
def test_space_members_build_and_run(family: str):
    """Every 29th member builds and runs, at the task's resolution and at the smallest cap."""
    members = FAMILIES[family].candidates((1, 28, 28), space=True)
    for params in members[::29] + [m for m in members if m["resolution"] == 12][:2]:
        model = build_student(StudentConfig(family, params), (1, 28, 28), 10).eval()
        with torch.no_grad():
            assert tuple(model(torch.zeros(2, *model_input_shape(model))).shape) == (2, 10), params
        assert model_input_shape(model)[1] == (params["resolution"] or 28)


def test_draws_take_the_families_in_turn():
    fams = [FAMILIES[n] for n in ("resnet", "mbv2", "dscnn")]
    order = _draw_order(fams, (1, 28, 28), SearchSettings(seed=3))
    assert [f for f, _ in order[:9]] == ["dscnn", "mbv2", "resnet"] * 3  # mbv2's 6,750 members do not crowd out
    assert len(order) == 420 + 6750 + 360 and len(set(order)) == len(order)
    assert order == _draw_order(fams, (1, 28, 28), SearchSettings(seed=3))  # seeded
    # one family: the plain seeded shuffle of its sorted members (earlier single-family searches draw the same)
    import json

    plain = sorted(("mbv2", json.dumps(p, sort_keys=True)) for p in FAMILIES["mbv2"].candidates((1, 28, 28), True))
    random.Random(3).shuffle(plain)
    assert _draw_order([FAMILIES["mbv2"]], (1, 28, 28), SearchSettings(seed=3)) == plain
    narrowed = _draw_order(fams, (1, 28, 28), SearchSettings(seed=3, space={"resolution": [None], "kernel": [3]}))
    assert len(narrowed) == 7 * 12 + 5 * 5 * 2 * 3 * 3 + 8 * 3 * 3  # kernel narrows mbv2 only


@pytest.mark.parametrize("task", ["digits", pytest.param("fashion-mnist", marks=[pytest.mark.slow, pytest.mark.heavy])])
@pytest.mark.parametrize("family", ["dscnn", "resnet"])
def test_drawn_configs_fit_the_targets_budgets(family: str, task: str):
    """On nrf52840-dk (256 KiB flash, 64 KiB RAM, 200 ms; on Fashion-MNIST its flash binds the DS-CNNs) every
    drawn trial is inside the family's space, fits every budget as the cost model prices it, and uses only the
    target's operators; re-costed from scratch, the figures are the same. (Fashion-MNIST is slow: planning it
    from a cold cost cache takes a minute or two.)"""
    from edgekd.costmodel import analyze
    from edgekd.planner import evaluate

    nrf, spec = load_target("nrf52840-dk"), get_spec(task)
    trials, costed, counted = _sample_trials(nrf, spec, SearchSettings(task=task, trials=4, families=[family]))
    assert len(trials) == 4 and costed >= 3 and counted == 0
    assert all(t.family == family and t.origin == "sampled" for t in trials[1:])
    budgets = nrf.budgets.to_dict()
    space = FAMILIES[family].space
    for t in trials[1:]:
        assert all(t.config[k] in space[k] for k in space) and set(t.config) == set(space)
        assert all(0 < t.predicted[k] <= budgets[k] for k in budgets), (t.config, t.predicted)
        again = evaluate(StudentConfig(family, t.config), nrf, spec)
        assert again.fits and again.predicted == t.predicted and again.macs == t.macs
        model = build_student(StudentConfig(family, t.config), spec.input_shape, spec.num_classes)
        assert set(analyze(model, model_input_shape(model)).ops) <= set(nrf.operators)
    if task == "fashion-mnist":  # a budget nothing of the family fits: refused after a bounded number of costings
        with pytest.raises(EdgekdError, match=f"no student of {family} fits nrf52840-dk after costing 40"):
            _sample_trials(nrf.with_budgets(flash="12KiB"), spec, SearchSettings(task=task, trials=1,
                                                                                families=[family]))
