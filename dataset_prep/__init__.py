"""Dataset preparation for recbole-lda: raw files -> cached canonical tables -> split RecBole atomic files.

`prepare(config)` returns the folder RecBole reads; `oracle_predictions(config, users, items)`
gives the best achievable predictions where the generating distribution is known
(synthetic). Converters are registered in `common.CONVERTERS`. Modules: common (shared
definitions, cache folders), pipeline (`prepare`), split (split and atomic files), raw
(reading raw CSV files), one module per converter, download (fetching the public archives).
"""

from dataset_prep.common import CONVERTERS, PreparedDataset, RawDataError, RawDataMissing, Tables
from dataset_prep.pipeline import locate, oracle_predictions, prepare

__all__ = ["CONVERTERS", "PreparedDataset", "RawDataError", "RawDataMissing", "Tables", "locate", "oracle_predictions", "prepare"]
