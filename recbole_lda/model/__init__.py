"""Watch-time models: the public base class every model derives from
(`WatchTimeRecommender`, in `backbone`: the shared user/video/duration encoder, the
contract of a model) and LDA (`lda`, with its parts `anchors`, `vq`, `ot`). The baselines
live in the top-level `baselines/` package, one model per file."""

from recbole_lda.model.backbone import REGRESSION_LOSSES, WatchTimeRecommender, training_statistics

__all__ = ["REGRESSION_LOSSES", "WatchTimeRecommender", "training_statistics"]
