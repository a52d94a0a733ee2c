"""Bounded id embeddings of the ray engine (recbole_lda/quick_start/vocabulary.py)."""

import numpy as np

from recbole_lda.quick_start import stream_model as sm
from recbole_lda.quick_start import vocabulary
from stream_helpers import write_streamed

MASK = (1 << 64) - 1


def splitmix64_scalar(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_rare_ids_share_one_row():
    v = vocabulary.build(np.array([5, 0, 1, 3, 7]), min_count=2, max_rows=None)
    assert v.size == 5  # padding, 3 frequent ids, 1 shared row
    assert v.rows(np.array([0, 1, 2, 3, 4])).tolist() == [1, 4, 4, 2, 3]
    assert v.report == {"ids": 5, "min_count": 2, "max_rows": None, "rare_ids": 2, "rare_training_rows": 1,
                        "hashed": False, "rows": 5}


def test_hashing_only_beyond_the_bound():
    counts = np.ones(6, dtype=np.int64)
    kept = vocabulary.build(counts, min_count=1, max_rows=6)
    assert (kept.size, kept.rows(np.arange(6)).tolist(), kept.report["hashed"]) == (7, [1, 2, 3, 4, 5, 6], False)
    hashed = vocabulary.build(counts, min_count=1, max_rows=4)
    assert hashed.size == 5 and hashed.report["hashed"] is True
    assert hashed.rows(np.arange(6)).tolist() == [1 + splitmix64_scalar(i) % 4 for i in range(6)]
    both = vocabulary.build(np.array([5, 0, 1, 3, 7]), min_count=2, max_rows=2)  # 4 dense rows hashed into 2
    assert both.rows(np.arange(5)).tolist() == [1 + splitmix64_scalar(r) % 2 for r in (0, 3, 3, 1, 2)]


def test_counts_from_the_training_partitions(tmp_path):
    folder = write_streamed(str(tmp_path / "data"), rows=500, users=20, items=30)
    import pandas as pd
    import pyarrow.parquet as pq

    train = pd.concat([pq.read_table(f).to_pandas() for f in sorted((tmp_path / "data" / "train").glob("*.parquet"))])
    expected = np.bincount(train.item_index, minlength=30)
    assert vocabulary.id_counts(folder, "item_index", sm.id_count(folder, "item")).tolist() == expected.tolist()
