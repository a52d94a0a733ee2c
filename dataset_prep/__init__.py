"""Dataset preparation for recbole-lda: raw files -> cached canonical tables -> split RecBole atomic files.

`prepare(config)` returns the folder RecBole reads; `oracle_predictions(config, users, items)`
gives the best achievable predictions where the generating distribution is known
(synthetic). Converters are registered in `common.CONVERTERS`.
"""

from dataset_prep.common import (
    CONVERTERS,
    PreparedDataset,
    RawDataError,
    RawDataMissing,
    Tables,
    oracle_predictions,
    prepare,
)

__all__ = ["CONVERTERS", "PreparedDataset", "RawDataError", "RawDataMissing", "Tables", "oracle_predictions", "prepare"]
