"""Grouping and statistics against hand-computed numbers.

The roads sweep below: bce best mIoU 0.70 / 0.72 / 0.74 (mean 0.72, sample std 0.02),
lovasz_hinge_bce 0.75 / 0.76 / 0.77 (mean 0.76, std 0.01), lovasz_hinge one seed at 0.66.
Pooled std of bce and lovasz_hinge_bce: sqrt((2·0.02² + 2·0.01²) / 4) = sqrt(0.00025).
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from lovaszseg.reporting.aggregate import last_third_gain, pooled_std, spread, summarise
from lovaszseg.reporting.paired import critical_t, paired_test
from lovaszseg.reporting.runs import load_runs
from tests.reporting.fakes import BCE, COMBINED, road_curve, roads_sweeps, write_run, write_sweep


def group(panel, label):
    return next(g for g in panel["groups"] if g["label"] == label)


def spread_of(*values):
    return spread(pd.Series(values, dtype=object))


def test_spread_is_sample_std_and_none_for_one_value():
    three = spread_of(0.70, 0.72, None, 0.74)  # a missing value is left out
    assert (three["n"], three["min"], three["max"]) == (3, 0.70, 0.74)
    assert three["mean"] == pytest.approx(0.72) and three["std"] == pytest.approx(0.02)
    assert spread_of(0.66)["std"] is None
    assert spread_of(None) is None
    assert pooled_std(spread_of(*BCE), spread_of(*COMBINED)) == pytest.approx(math.sqrt(0.00025))
    assert pooled_std(spread_of(0.6), spread_of(0.7)) is None


def test_last_third_gain_is_the_rise_of_the_best_over_the_last_third_of_epochs():
    # 6 epochs: the last third is epochs 4-5; the best before them is 0.72, after 0.73
    assert last_third_gain({0: 0.5, 1: 0.6, 2: 0.7, 3: 0.72, 4: 0.71, 5: 0.73}) == pytest.approx(
        0.01
    )
    assert last_third_gain({0: 0.5, 1: 0.8, 2: 0.6, 3: 0.7}) == pytest.approx(0.0)  # 4: last 2
    assert last_third_gain({0: 0.5, 1: 0.6}) is None


def test_summary_of_two_sweeps_matches_hand_computed_numbers(tmp_path):
    report = summarise(load_runs(roads_sweeps(tmp_path)))
    (panel,) = report.panels
    assert panel["baseline"] == "bce"  # automatic for a binary task
    assert panel["notes"] == []
    assert [g["label"] for g in panel["groups"]] == ["lovasz_hinge_bce", "bce", "lovasz_hinge"]
    assert [g["rank"] for g in panel["groups"]] == [1, 2, 3]

    combined = group(panel, "lovasz_hinge_bce")
    assert combined["best"]["values"] == pytest.approx(COMBINED)  # the crashed 0.9 not counted
    assert combined["best"]["mean"] == pytest.approx(0.76)
    assert combined["best"]["std"] == pytest.approx(0.01)
    assert combined["delta_vs_baseline"] == pytest.approx(0.04)
    assert combined["delta_in_pooled_std"] == pytest.approx(0.04 / math.sqrt(0.00025))  # 2.53
    assert combined["n_incomplete_left_out"] == 1
    crashed = combined["runs"][-1]
    assert (crashed["seed"], crashed["counted"], crashed["status"]) == (4, False, "incomplete")
    # per-class IoU at each run's best epoch: road = 2·mIoU − 0.97
    assert combined["per_class_iou"]["road"]["mean"] == pytest.approx(2 * 0.76 - 0.97)
    assert combined["per_class_iou"]["road"]["std"] == pytest.approx(0.02)
    assert combined["per_class_iou"]["background"]["std"] == pytest.approx(0.0)
    # road = 2·mIoU − 0.97 on both sides: Δ 0.08, pooled std 2·sqrt(0.00025)
    road = combined["per_class_delta_vs_baseline"]["road"]
    assert road["delta"] == pytest.approx(0.08)
    assert road["delta_in_pooled_std"] == pytest.approx(0.08 / (2 * math.sqrt(0.00025)))
    assert combined["per_class_delta_vs_baseline"]["background"]["delta"] == pytest.approx(0.0)
    assert combined["best_epoch"]["values"] == [1, 1, 1]
    assert combined["wall_time_s"]["mean"] == pytest.approx(60.0)

    baseline = group(panel, "bce")
    assert baseline["is_baseline"] and baseline["delta_vs_baseline"] == pytest.approx(0.0)

    direct = group(panel, "lovasz_hinge")
    assert direct["best"]["n"] == 1 and direct["best"]["std"] is None
    assert direct["delta_vs_baseline"] == pytest.approx(-0.06)
    assert direct["delta_in_pooled_std"] == pytest.approx(-3.0)  # pooled over bce's 2 dof

    assert report.summary["incomplete_runs"] == [str(tmp_path / "day2" / "3")]


def test_include_incomplete_counts_the_crashed_run(tmp_path):
    report = summarise(load_runs(roads_sweeps(tmp_path)), include_incomplete=True)
    combined = group(report.panels[0], "lovasz_hinge_bce")
    assert combined["best"]["values"] == pytest.approx((*COMBINED, 0.9))
    assert combined["n_incomplete_left_out"] == 0


def test_weight_overrides_make_their_own_group(tmp_path):
    runs = [
        write_run(tmp_path / f"a{s}", loss="lovasz_hinge_bce", seed=s, miou=road_curve(0.7))
        for s in (1, 2)
    ] + [
        write_run(
            tmp_path / f"b{s}",
            loss="lovasz_hinge_bce",
            seed=s,
            miou=road_curve(0.8),
            weights={"lovasz_hinge": 0.3, "bce": 0.7},
        )
        for s in (1, 2)
    ]
    (panel,) = summarise(load_runs(runs)).panels
    assert [g["label"] for g in panel["groups"]] == [
        "lovasz_hinge_bce (loss.terms.bce.weight=0.7, loss.terms.lovasz_hinge.weight=0.3)",
        "lovasz_hinge_bce (loss.terms.bce.weight=0.5, loss.terms.lovasz_hinge.weight=0.5)",
    ]
    assert [g["best"]["mean"] for g in panel["groups"]] == pytest.approx([0.8, 0.7])


def test_by_splits_panels_each_with_its_own_baseline(tmp_path):
    specs = []
    for difficulty, shift in (("easy", 0.1), ("hard", 0.0)):
        for seed, (b, c) in enumerate(zip(BCE, COMBINED, strict=True), start=1):
            common = {"seed": seed, "difficulty": difficulty}
            specs.append({"loss": "bce", "miou": road_curve(b + shift), **common})
            specs.append({"loss": "lovasz_hinge_bce", "miou": road_curve(c + shift), **common})
    runs = load_runs([write_sweep(tmp_path / "s", specs)])

    mixed = summarise(runs)
    assert any("`data.difficulty` (easy | hard)" in note for note in mixed.panels[0]["notes"])

    report = summarise(runs, by="data.difficulty")
    assert [p["by_value"] for p in report.panels] == ["easy", "hard"]
    assert report.headings == ["data.difficulty=easy", "data.difficulty=hard"]
    for panel, shift in zip(report.panels, (0.1, 0.0), strict=True):
        assert panel["baseline"] == "bce" and panel["notes"] == []
        combined = group(panel, "lovasz_hinge_bce")
        assert combined["best"]["mean"] == pytest.approx(0.76 + shift)
        assert combined["delta_vs_baseline"] == pytest.approx(0.04)


def test_by_a_group_choice_and_a_missing_key(tmp_path):
    runs = load_runs(roads_sweeps(tmp_path))
    assert [p["by_value"] for p in summarise(runs, by="data").panels] == ["synthetic_roads"]
    with pytest.raises(ValueError, match=r"config.yaml: no config key or group choice 'data.nope'"):
        summarise(runs, by="data.nope")
    with pytest.raises(ValueError, match="is a config section"):
        summarise(runs, by="loss.terms")


def test_multiclass_baseline_is_ce_and_unknown_baselines_are_refused(tmp_path):
    classes = ("background", "cat", "dog")
    runs = load_runs(
        [
            write_sweep(
                tmp_path / "voc",
                [
                    {"loss": loss, "seed": 1, "miou": road_curve(m), "classes": classes}
                    for loss, m in (("ce", 0.5), ("lovasz_softmax_ce", 0.55))
                ],
            )
        ]
    )
    (panel,) = summarise(runs).panels
    assert panel["baseline"] == "ce"
    assert group(panel, "lovasz_softmax_ce")["delta_vs_baseline"] == pytest.approx(0.05)
    assert (
        group(panel, "lovasz_softmax_ce")["delta_in_pooled_std"] is None
    )  # one seed each: no spread
    with pytest.raises(ValueError, match=r"--baseline 'bce'.*'ce', 'lovasz_softmax_ce'"):
        summarise(runs, baseline="bce")


def test_missing_baseline_and_repeated_seeds_are_noted(tmp_path):
    runs = [
        write_run(tmp_path / name, loss="lovasz_hinge", seed=1, miou=road_curve(0.6))
        for name in ("a", "b")
    ]
    (panel,) = summarise(load_runs(runs)).panels
    assert panel["baseline"] is None and panel["groups"][0]["delta_vs_baseline"] is None
    assert any("no `bce` runs here" in note for note in panel["notes"])
    assert any("seed(s) [1] more than once" in note for note in panel["notes"])


def test_a_metric_no_run_logged_is_refused_with_the_logged_ones(tmp_path):
    runs = load_runs(roads_sweeps(tmp_path))
    with pytest.raises(ValueError, match=r"--metric 'val/miou'.*'val/IoU_road', 'val/mIoU'"):
        summarise(runs, metric="val/miou")


def test_two_run_finetune_is_its_own_group_named_after_its_start(tmp_path):
    """`init_from` a bce run's checkpoint: "bce → lovasz_hinge", not the direct mode's group."""
    start = write_run(tmp_path / "bce", loss="bce", seed=1, miou=road_curve(0.70))
    direct = write_run(tmp_path / "direct", loss="lovasz_hinge", seed=1, miou=road_curve(0.60))
    tuned = write_run(tmp_path / "tuned", loss="lovasz_hinge", seed=1, miou=road_curve(0.74))
    ckpt = str(start / "checkpoints" / "best.ckpt")
    results = json.loads((tuned / "results.json").read_text())
    (tuned / "results.json").write_text(json.dumps({**results, "init_from": ckpt}))
    config = tuned / ".hydra" / "config.yaml"
    config.write_text(config.read_text() + f"init_from: {ckpt}\n")
    (panel,) = summarise(load_runs([start, direct, tuned])).panels
    assert [g["label"] for g in panel["groups"]] == ["bce → lovasz_hinge", "bce", "lovasz_hinge"]
    assert panel["groups"][0]["delta_vs_baseline"] == pytest.approx(0.04)
    assert panel["notes"] == []


def test_runs_pair_with_the_baseline_run_of_their_seed(tmp_path):
    # lovasz_hinge_bce − bce per seed: 0.05, 0.04, 0.03 → mean 0.04, sd 0.01, t = 4·√3;
    # with 2 degrees of freedom the t distribution's two-sided p is 1 − t/√(2 + t²)
    (panel,) = summarise(load_runs(roads_sweeps(tmp_path))).panels
    combined = group(panel, "lovasz_hinge_bce")
    paired = combined["paired_vs_baseline"]
    assert paired["seeds"] == [1, 2, 3] and paired["n"] == 3
    assert paired["deltas"] == pytest.approx([0.05, 0.04, 0.03])
    assert paired["mean"] == pytest.approx(0.04)
    t = 4 * math.sqrt(3)
    assert paired["t"] == pytest.approx(t)
    assert paired["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t))
    # road = 2·mIoU − 0.97, so its differences double and t stays; background never moves
    road = combined["per_class_paired_vs_baseline"]["road"]
    assert road["deltas"] == pytest.approx([0.10, 0.08, 0.06])
    assert road["t"] == pytest.approx(t)
    assert combined["per_class_paired_vs_baseline"]["background"]["t"] is None
    # one seed pairs up: a difference, no test; the baseline pairs with nothing
    direct = group(panel, "lovasz_hinge")["paired_vs_baseline"]
    assert direct["seeds"] == [1] and direct["deltas"] == pytest.approx([-0.04])
    assert direct["t"] is None and direct["p"] is None
    assert group(panel, "bce")["paired_vs_baseline"] is None


def test_paired_p_with_one_degree_of_freedom_is_the_cauchy_tail():
    # t with 1 dof is Cauchy: two-sided p = 1 − (2/π)·atan|t|; deltas 0.1, 0.3 → t = 0.2/(√0.02/√2) = 2
    after = pd.Series([0.6, 0.8, None], index=[1, 2, 3], dtype=float)
    paired = paired_test(after, pd.Series([0.5, 0.5, 0.5], index=[1, 2, 3]))
    assert paired["seeds"] == [1, 2]  # a seed without a difference is not a pair
    assert paired["t"] == pytest.approx(2.0)
    assert paired["p"] == pytest.approx(1 - 2 / math.pi * math.atan(2.0))


def test_critical_t_matches_closed_forms_for_one_and_two_degrees_of_freedom():
    # 1 dof (Cauchy): tan(π·(0.975 − 1/2)); 2 dof: F(t) = 1/2 + t/(2·√(2 + t²)) = 0.975
    # gives t² = 2·0.95²/(1 − 0.95²)
    assert critical_t(2) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-9)
    assert critical_t(3) == pytest.approx(math.sqrt(2 * 0.95**2 / (1 - 0.95**2)), rel=1e-9)
    assert critical_t(3) == pytest.approx(4.303, abs=5e-4)  # the tables' figure
    assert critical_t(5) == pytest.approx(2.776, abs=5e-4)
    with pytest.raises(ValueError, match="at least 2 pairs, got 1"):
        critical_t(1)


def test_repeated_or_missing_seeds_are_left_out_of_the_pairs(tmp_path):
    sweep = write_sweep(
        tmp_path / "s",
        [
            {"loss": "bce", "seed": 1, "miou": road_curve(0.70)},
            {"loss": "bce", "seed": 2, "miou": road_curve(0.72)},
            {"loss": "bce", "seed": 2, "miou": road_curve(0.73)},  # seed 2 twice: not paired
            {"loss": "lovasz_hinge", "seed": 1, "miou": road_curve(0.71)},
            {"loss": "lovasz_hinge", "seed": 2, "miou": road_curve(0.74)},
            {"loss": "lovasz_hinge", "seed": 3, "miou": road_curve(0.75)},  # no bce seed 3
        ],
    )
    (panel,) = summarise(load_runs([sweep])).panels
    paired = group(panel, "lovasz_hinge")["paired_vs_baseline"]
    assert paired["seeds"] == [1] and paired["deltas"] == pytest.approx([0.01])


def test_a_class_name_with_a_space_is_read_from_the_column_training_logs(tmp_path):
    run = write_run(tmp_path / "r", loss="ce", seed=1, miou=[0.5], classes=("sky", "potted plant"))
    metrics = run / "metrics.csv"  # the module logs val/IoU_potted_plant (no space in a column)
    metrics.write_text(metrics.read_text().replace("val/IoU_potted plant", "val/IoU_potted_plant"))
    (panel,) = summarise(load_runs([run])).panels
    assert panel["class_names"] == ["sky", "potted plant"]
    (group,) = panel["groups"]
    assert group["per_class_iou"]["potted plant"]["mean"] == pytest.approx(2 * 0.5 - 0.97)
