"""Learning curves from compare folders (recbole_lda/report/curves.py, recbole_lda/cli/curves.py): exact epochs-to-within
values on hand-made histories, and the files written from a folder laid out as compare's."""

import json

import pytest

from recbole_lda.cli import curves as curves_cli
from recbole_lda.report import curves
from recbole_lda.utils.errors import UsageError
from recbole_lda.config.entries import run_label


@pytest.mark.parametrize(
    "history, within, expected",
    [
        ([10.0, 8.0, 6.0, 5.0, 5.2], 0.05, 4),  # 6.0 > 5.25: the 4th epoch is the first within 5%
        ([10.0, 8.0, 5.2, 5.0], 0.05, 3),  # 5.2 <= 5.25
        ([5.0, 9.0], 0.05, 1),  # best at once
        ([10.0, 8.0, 6.0, 5.0], 0.25, 3),  # 6.0 <= 6.25
    ],
)
def test_epochs_to_within(history, within, expected):
    assert curves.epochs_to_within(history, within) == expected


def write_compare_folder(folder, histories):
    """histories: {(entry, seed): [valid MAE per epoch]} on dataset 'toy'."""
    runs = []
    for (entry, seed), history in histories.items():
        runs.append({"dataset": "toy", "entry": entry, "seed": seed})
        path = folder / "runs" / f"{run_label(entry, 'toy', seed)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"valid_history": [{"epoch": i, "mae": v} for i, v in enumerate(history)]}))
    (folder / "summary.json").write_text(json.dumps({"runs": runs}))


def test_table_and_files(tmp_path):
    write_compare_folder(tmp_path / "a", {
        ("VR", 0): [10.0, 8.0, 6.0, 5.0],
        ("VR", 1): [9.0, 6.0, 7.0],
        ("LDA[temperature=0.5]", 0): [12.0, 11.0, 10.0, 9.0, 8.0, 7.0],
    })
    curves_cli.main(["--runs", str(tmp_path / "a"), "--models", "LDA[temperature=0.5],VR", "--output", str(tmp_path / "out" / "c")])
    table = (tmp_path / "out" / "c.csv").read_text().splitlines()
    assert table[0] == ("dataset,model,seeds,best_valid_mae,best_epoch,epochs_to_within,epochs_to_within_max,"
                        "first_epoch_valid_mae")
    assert table[1] == "toy,LDA[temperature=0.5],1,7.0,6.0,6.0,6,12.0"  # the order asked for
    # VR: bests 5.0 (epoch 4) and 6.0 (epoch 2); within 5% at epochs 4 and 2
    assert table[2] == "toy,VR,2,5.5,3.0,3.0,4,9.5"
    assert "| toy | VR | 2 | 9.500 | 5.500 | 3.0 | 3.0 / 4 |" in (tmp_path / "out" / "c.md").read_text()
    assert (tmp_path / "out" / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_model_and_folder_are_clear_errors(tmp_path):
    write_compare_folder(tmp_path / "a", {("VR", 0): [3.0, 2.0]})
    with pytest.raises(UsageError, match=r"no runs of D2Q in"):
        curves.load_curves([tmp_path / "a"], ["VR", "D2Q"])
    with pytest.raises(UsageError, match=r"summary.json does not exist"):
        curves.load_curves([tmp_path / "nothing"])
