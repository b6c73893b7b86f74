"""The run contract: results.json written and read back, its statuses, best/final, metric keys."""

from __future__ import annotations

import json

import pytest

from lovaszseg.runs import contract


def test_results_written_are_read_back_from_the_file_or_the_run_folder(tmp_path):
    payload = {"loss": "bce", "status": contract.COMPLETED, "best": {"val/mIoU": 0.75}}
    contract.write_results(contract.results_path(tmp_path), payload)
    assert contract.read_results(tmp_path / "results.json") == payload
    assert contract.read_results(tmp_path) == payload
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left over


def test_an_unknown_status_is_refused_on_write_and_on_read(tmp_path):
    with pytest.raises(ValueError, match="'done' is not one of running, completed"):
        contract.write_results(tmp_path / "results.json", {"status": "done"})
    (tmp_path / "results.json").write_text(json.dumps({"status": "done"}))
    with pytest.raises(ValueError, match=r"results.json: status 'done' is not one of"):
        contract.read_results(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "no results file at"), ("{", "cannot read results.json"), ("[1]", "got list")],
)
def test_an_unreadable_results_file_is_named(tmp_path, text, message):
    if text is not None:
        (tmp_path / "results.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        contract.read_results(tmp_path / "results.json")


def test_best_is_highest_miou_and_earliest_on_ties_final_is_last():
    history = [
        {"epoch": 0, "val/mIoU": 0.2},
        {"epoch": 1, "val/mIoU": 0.6},
        {"epoch": 2, "val/mIoU": 0.6},
        {"epoch": 3, "val/mIoU": None},
    ]
    best, final = contract.best_and_final(history)
    assert (best["epoch"], final["epoch"]) == (1, 3)
    assert contract.best_and_final([{"epoch": 0, "val/mIoU": None}]) == (
        None,
        {"epoch": 0, "val/mIoU": None},
    )
    assert contract.best_and_final([]) == (None, None)


def test_class_keys_have_no_spaces_and_give_their_class_back():
    key = contract.class_iou_key(" potted plant ")
    assert key == "val/IoU_potted_plant"
    assert contract.class_of_iou_key(key) == "potted_plant"
    assert contract.class_of_iou_key(contract.VAL_MIOU) is None


def test_loss_of_checkpoint_reads_the_run_that_wrote_it(tmp_path):
    run = tmp_path / "run"
    contract.write_results(run / "results.json", {"loss": "bce", "status": "completed"})
    assert contract.loss_of_checkpoint(run / "checkpoints" / "best.ckpt") == "bce"
    assert contract.loss_of_checkpoint(tmp_path / "elsewhere" / "best.ckpt") == "checkpoint"
