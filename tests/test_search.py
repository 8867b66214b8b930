"""`edgekd search`: successive halving over fitting students, the Pareto frontier, determinism for a seed,
`build --search FRONTIER` and (slow) the same result on a real two-node Ray cluster started here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.errors import EdgekdError
from edgekd.search import FRONTIER_JSON, FRONTIER_PNG, SearchSettings, Trial, load_choice, pareto, search
from edgekd.targets import load_target

TINY = {"task": "digits", "trials": 3, "min_epochs": 1, "max_epochs": 2, "eta": 2, "limit": 400}


@pytest.fixture(autouse=True)
def _own_cache(cost_cache: Path) -> Path:
    return cost_cache


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_rungs():
    assert SearchSettings(min_epochs=1, max_epochs=9, eta=3).rungs() == [1, 3, 9]
    assert SearchSettings(min_epochs=2, max_epochs=10, eta=3).rungs() == [2, 6, 10]
    assert SearchSettings(min_epochs=4, max_epochs=4).rungs() == [4]


def trial(i: int, acc: float, ms: float, ram: int) -> Trial:
    return Trial(i, "x", {}, 0, 0, {"latency_ms": ms, "ram_bytes": ram, "flash_bytes": 0}, "sampled",
                 [{"epochs": 1, "val_accuracy": acc}])


def test_pareto_by_hand():
    trials = [trial(0, 0.90, 10, 100), trial(1, 0.95, 20, 100), trial(2, 0.89, 12, 100),  # 2: worse than 0 on all
              trial(3, 0.80, 5, 300), trial(4, 0.80, 5, 50), trial(5, 0.95, 20, 100)]  # 3 loses to 4; 5 ties 1
    assert pareto(trials) == [0, 1, 4]


@pytest.mark.slow
def test_search_is_deterministic_and_writes_the_frontier(tmp_path: Path):
    nrf = load_target("nrf52840-dk")
    a = search(nrf, SearchSettings(**TINY), tmp_path / "a")
    b = search(nrf, SearchSettings(**TINY), tmp_path / "b")
    assert json.dumps(a.deterministic_json()) == json.dumps(b.deterministic_json())
    assert (tmp_path / "a" / FRONTIER_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "a" / FRONTIER_JSON).read_text())
    assert saved["format"] == "edgekd-search/1" and saved["executor"] == "serial" and saved["rungs"] == [1, 2]
    trials = saved["trials"]
    assert len(trials) == 3 and trials[0]["origin"] == "planner" and trials[0]["family"] == "resnet"
    assert [t["family"] for t in trials[1:]] == ["dscnn", "mbv2"]  # the searched families in turn (both fit)
    for t in trials:  # every trial fits every budget, as costed by the cost model
        assert all(t["predicted"][k] <= nrf.budgets.to_dict()[k] for k in ("flash_bytes", "ram_bytes", "latency_ms"))
        assert 0 <= t["val_accuracy"] <= 1
    # successive halving: 3 trials at 1 epoch, the best 3 // 2 = 1 again at 2 epochs
    assert [len(t["rungs"]) for t in trials].count(2) == 1 and saved["trial_runs"] == 4 and saved["trial_epochs"] == 5
    top = max(trials, key=lambda t: (t["epochs"], t["val_accuracy"]))
    assert saved["chosen"]["id"] == top["id"] and saved["chosen"]["epochs"] == 2
    assert saved["chosen"]["id"] in saved["frontier"]
    other = search(nrf, SearchSettings(**(TINY | {"seed": 1})), tmp_path / "c")
    assert [t.config for t in other.trials[1:]] != [t.config for t in a.trials[1:]]  # the seed draws the trials


@pytest.mark.slow
def test_build_search_trains_the_chosen_student(tmp_path: Path):
    from edgekd.build.context import BuildContext, BuildOptions
    from edgekd.build.plan import named_student

    nrf = load_target("nrf52840-dk")
    result = search(nrf, SearchSettings(**(TINY | {"max_epochs": 1, "trials": 2})), tmp_path / "s")
    ctx = BuildContext.create(nrf, BuildOptions(task="digits", searched=str(tmp_path / "s")), tmp_path / "b")
    chosen = named_student(ctx)
    assert (chosen.family, chosen.config) == (result.best.family, result.best.config) and chosen.fits
    assert chosen.predicted == result.best.predicted
    assert named_student(BuildContext.create(nrf, BuildOptions(task="digits"), tmp_path / "b")) is None
    with pytest.raises(EdgekdError, match="searched for task 'digits', this build is for 'fashion-mnist'"):
        load_choice(tmp_path / "s", "nrf52840-dk", "fashion-mnist")
    with pytest.raises(EdgekdError, match="no search result here; run `edgekd search"):
        load_choice(tmp_path / "nothing", "nrf52840-dk", "digits")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(EdgekdError, match="not an edgekd search result"):
        load_choice(tmp_path / "x.json", "nrf52840-dk", "digits")
    with pytest.raises(EdgekdError, match="does not fit nrf52840-dk: RAM") as exc:  # re-checked at the build
        named_student(BuildContext.create(nrf, BuildOptions(task="digits", searched=str(tmp_path / "s"),
                                                            budgets={"ram": "4KiB"}), tmp_path / "b"))
    assert exc.value.exit_code == 1


@pytest.mark.slow
def test_search_cli_json_and_bad_input(tmp_path: Path):
    from edgekd.cli import main

    r = CliRunner().invoke(main, ["search", "--target", "nrf52840-dk", "--task", "digits", "--trials", "2",
                                  "--epochs", "1", "--limit", "300", "--serial", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["chosen"]["family"] and len(out["trials"]) == 2 and out["latency_kind"] == "estimated"
    r = CliRunner().invoke(main, ["search", "--target", "nrf52840-dk", "--epochs", "1", "--min-epochs", "3",
                                  "--serial", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--min-epochs 3 is more than --epochs 1" in r.stderr
    r = CliRunner().invoke(main, ["search", "--target", "nrf52840-dk", "--counted-latency", "0", "--serial",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--counted-latency" in r.stderr


# ---------------------------------------------------------------- Ray (slow); two-node cluster tests: test_ray.py

@pytest.mark.slow
def test_tune_asha_on_a_local_ray_instance_reproduces_each_trial_rung(tmp_path: Path):
    """Ray Tune's ASHAScheduler: every (trial, rung) it ran has the serial run's accuracy (which trials it
    promotes is its own, asynchronous decision)."""
    nrf = load_target("nrf52840-dk")
    serial = search(nrf, SearchSettings(**TINY), tmp_path / "serial")
    tuned = search(nrf, SearchSettings(**TINY), tmp_path / "asha", executor="ray", workers=1, scheduler="asha")
    assert "ASHAScheduler" in tuned.executor and (tmp_path / "asha" / "tune").is_dir()
    runs = {(t.id, r["epochs"]): r["val_accuracy"] for t in serial.trials for r in t.rungs}
    tuned_runs = {(t.id, r["epochs"]): r["val_accuracy"] for t in tuned.trials for r in t.rungs}
    assert tuned_runs and all(runs.get(k, v) == v for k, v in tuned_runs.items())
    assert all((t.id, 1) in tuned_runs for t in tuned.trials)  # every trial ran rung 0
    with pytest.raises(EdgekdError, match="asha is Ray Tune's scheduler"):
        search(nrf, SearchSettings(**TINY), tmp_path / "x", executor="serial", scheduler="asha")


@pytest.mark.slow
def test_search_distils_trials_from_a_teacher(tmp_path: Path):
    from edgekd.distill import train_teacher

    train_teacher("digits", tmp_path / "t.pt", epochs=1, progress=False)
    nrf = load_target("nrf52840-dk")
    settings = TINY | {"trials": 2, "max_epochs": 1}
    kd = search(nrf, SearchSettings(**settings, teacher=str(tmp_path / "t.pt")), tmp_path / "kd")
    ce = search(nrf, SearchSettings(**settings), tmp_path / "ce")
    assert [t.config for t in kd.trials] == [t.config for t in ce.trials]
    assert [t.accuracy for t in kd.trials] != [t.accuracy for t in ce.trials]  # the soft targets changed training
    assert kd.deterministic_json()["settings"]["teacher"] == str(tmp_path / "t.pt")


def test_pool_keeps_the_largest_fitting_draws():
    """--pool 3: the same seeded draws as a uniform run, of which the largest by MACs become the trials."""
    from edgekd.data import get_spec
    from edgekd.search import _sample_trials

    nrf, spec = load_target("nrf52840-dk"), get_spec("digits")
    uniform, *_ = _sample_trials(nrf, spec, SearchSettings(trials=7))
    pooled, *_ = _sample_trials(nrf, spec, SearchSettings(trials=3, pool=3))
    assert uniform[0].origin == pooled[0].origin == "planner" and uniform[0].config == pooled[0].config
    largest = sorted(uniform[1:], key=lambda t: -t.macs)[:2]
    assert [t.config for t in pooled[1:]] == [t.config for t in sorted(largest, key=lambda t: t.id)]
    assert [t.id for t in pooled] == [0, 1, 2]


def test_counted_latency_ranks_and_plots_trials(tmp_path: Path):
    """With a counted figure, the search compares, chooses and plots trials on it, not on the estimate."""
    from edgekd.search import SearchResult, plot_frontier

    trials = [trial(0, 0.90, 10, 100), trial(1, 0.90, 20, 100), trial(2, 0.85, 30, 100)]
    trials[0].origin = "planner"
    trials[0].predicted["latency_ms_counted"] = 9.0
    trials[1].predicted["latency_ms_counted"] = 4.0  # slower by the estimate, faster counted
    trials[2].predicted["latency_ms_counted"] = 2.0
    assert [t.latency_ms for t in trials] == [9.0, 4.0, 2.0]
    assert pareto(trials) == [1, 2]  # on the estimate, 0 (as accurate, faster) would dominate 1: [0, 2]
    settings = SearchSettings(counted_latency_ms=10.0)
    result = SearchResult("nrf52840-dk", "digits", settings, load_target("nrf52840-dk").budgets.to_dict(), trials,
                          pareto(trials), 1, 3, False, "serial", 1.0, counted=3)
    assert result.to_json()["latency_kind"] == "counted (untrained weights)"
    assert result.deterministic_json()["candidates_counted"] == 3
    assert "counted on the emulated core" in result.text()
    png = plot_frontier(result, tmp_path / "f.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.emulator  # counts each draw's generated C on the emulated Cortex-M4 (unicorn)
def test_counted_cap_keeps_the_draws_nearest_it():
    """counted_latency_ms: each fitting draw is counted (untrained, int8, edgekd's C on the emulated core); only
    draws under the cap are trials, and --pool keeps those with the most counted latency. Checked against the
    same seeded draws counted without a cap."""
    from edgekd.data import load_task
    from edgekd.search import _sample_trials
    from edgekd.students.store import DATA_SEED

    nrf, probe = load_target("nrf52840-dk"), load_task("digits", None, seed=DATA_SEED, limit=10)
    calib = probe.x_train
    every, costed, counted = _sample_trials(nrf, probe.spec, SearchSettings(trials=5, counted_latency_ms=1e9), calib)
    assert counted == 5 and costed >= 4 and len(every) == 5 and every[0].origin == "planner"
    ms = [t.predicted["latency_ms_counted"] for t in every]
    assert all(m > 0 for m in ms) and [t.latency_ms for t in every] == ms
    cap = max(ms[0], sorted(ms[1:])[2])  # the planner pick and at least 3 of the 4 draws fit
    capped, _, n = _sample_trials(nrf, probe.spec, SearchSettings(trials=2, pool=2, counted_latency_ms=cap), calib)
    assert capped[0].origin == "planner" and capped[0].latency_ms == ms[0]  # counting is deterministic
    assert all(t.latency_ms <= cap for t in capped)
    kept = [t for t in every[1:] if t.predicted["latency_ms_counted"] <= cap][:2]  # pool 2 x 1 trial, draw order
    nearest = max(kept, key=lambda t: t.predicted["latency_ms_counted"])
    assert [(t.config, t.latency_ms) for t in capped[1:]] == [(nearest.config, nearest.latency_ms)]
    assert n == 2 + every[1:].index(kept[-1])  # the planner, then every fitting draw up to the last one kept


@pytest.mark.slow
def test_build_with_a_search_result_end_to_end(tmp_path: Path):
    """`edgekd build --search DIR`: the searched student is planned, distilled, exported, verified, packaged."""
    from edgekd.cli import main
    from edgekd.io import read_json

    nrf = load_target("nrf52840-dk")
    result = search(nrf, SearchSettings(**(TINY | {"trials": 2, "max_epochs": 1})), tmp_path / "s")
    out = tmp_path / "b"
    r = CliRunner().invoke(main, ["build", "--target", "nrf52840-dk", "--task", "digits", "--fast", "--epochs", "2",
                                  "--emulator", "none", "--search", str(tmp_path / "s"), "--out", str(out), "--json",
                                  "--max-drop", "10"])  # 2 epochs: int8 may lose a few points, not the point here
    assert r.exit_code == 0, r.output
    plan = read_json(out / "plan.json")
    assert (plan["student"]["family"], plan["student"]["config"]) == (result.best.family, result.best.config)
    report = read_json(out / "report.json")
    assert report["student"]["family"] == result.best.family and report["passed"]
    assert (out / "edgekd-nrf52840-dk-digits.tar.gz").is_file()


def test_distill_search_ranks_candidates_on_recalibrated_statistics(tmp_path: Path):
    """`distill --search N` scores each short run like `edgekd search` does: after re-estimating BatchNorm
    statistics (the running ones lag the weights after a short run), and keeps the best of those scores."""
    import torch

    from edgekd.data import load_task
    from edgekd.distill import distill, train_student
    from edgekd.distill.train import TrainConfig
    from edgekd.search_exec import recalibrated_accuracy
    from edgekd.students import StudentConfig
    from edgekd.students.store import DATA_SEED

    torch.set_num_threads(1)
    result = distill("nrf52840-dk", "digits", None, tmp_path / "d", loss="ce", epochs=4, search=3, limit=600,
                     verify_int8=False, progress=False)
    rows = result["candidates"]
    assert len(rows) == 3 and all(r["epochs"] == 1 for r in rows)
    best = max(rows, key=lambda r: (r["val_accuracy"], r["macs"]))
    assert (result["student"]["family"], result["student"]["config"]) == (best["family"], best["config"])
    # one epoch on 600 samples: the running statistics are far behind; the ranking used the recalibrated score
    assert max(r["val_accuracy"] - r["val_accuracy_running_stats"] for r in rows) > 0.1
    splits = load_task("digits", None, seed=DATA_SEED, limit=600)
    row = rows[1]
    model, rec = train_student(StudentConfig(row["family"], row["config"]), splits, None, "ce",
                               TrainConfig(epochs=1, seed=0, patience=0), None, False, None, None, progress=False)
    assert rec["best_val_accuracy"] == row["val_accuracy_running_stats"]  # the same run, retrained here
    assert recalibrated_accuracy(model, splits) == row["val_accuracy"]


@pytest.mark.slow  # costs ~40 Fashion-MNIST candidates: a minute on 2 shared cores
def test_space_narrows_the_draws_and_refuses_unknown_values():
    """--space resolution=none,24: every sampled trial keeps the input at 24 px or more."""
    from edgekd.data import get_spec
    from edgekd.search import _sample_trials
    from edgekd.search_space import parse_space

    space = parse_space(["resolution=none,24", "kernel=3,5"])
    assert space == {"resolution": [None, 24], "kernel": [3, 5]}
    nrf, spec = load_target("nrf52840-dk"), get_spec("fashion-mnist")
    trials, *_ = _sample_trials(nrf, spec, SearchSettings(task="fashion-mnist", trials=5, space=space))
    assert len(trials) == 5 and trials[0].origin == "planner"
    assert all(t.config["resolution"] in (None, 24) and t.config.get("kernel", 3) in (3, 5) for t in trials[1:])
    assert {t.family for t in trials[1:]} == {"dscnn", "mbv2", "resnet"}  # kernel narrows mbv2 alone
    with pytest.raises(EdgekdError, match=r"--space resolution=30: choose among 12, 16, 20, 24, None"):
        _sample_trials(nrf, spec, SearchSettings(task="fashion-mnist", space={"resolution": [30]}))
    with pytest.raises(EdgekdError, match="--space colour: no searched family has that parameter"):
        _sample_trials(nrf, spec, SearchSettings(task="fashion-mnist", space={"colour": [1]}))
    with pytest.raises(EdgekdError, match="expected KEY=V1,V2"):
        parse_space(["resolution"])
