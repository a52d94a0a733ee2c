"""Watch-time ranking metrics for RecBole: XAUC and XGAUC, exact, in O(n log n).

XAUC (Zhan et al., "Deconfounding Duration Bias in Watch-time Prediction for Video
Recommendation", KDD 2022) is the share of test pairs (i, j) with different watch times
whose predictions are ordered the same way:

    XAUC = ( #{y_i < y_j, p_i < p_j} + 1/2 #{y_i < y_j, p_i = p_j} ) / #{y_i < y_j}

Pairs with equal labels are excluded; pairs with equal predictions count 1/2. With C and
D the concordant and discordant pairs among the N pairs with different labels, this is
1/2 + (C - D) / (2 N), a Kendall-type statistic counted exactly (integers, no pair
sampling, no per-batch approximation). XGAUC is XAUC inside each user, averaged with
weights equal to each user's number of pairs with different labels, which reduces to
1/2 + sum_u (C_u - D_u) / (2 sum_u N_u). Users with no such pair do not count. A NaN
label or prediction makes both NaN (as RecBole's MAE), so that a diverged run is seen.

The counting, and the other published conventions (DADF's, CWM's, HEGM's block XAUC,
CWM's XGAUC, MAE and XAUC per duration bucket, `all_conventions`), live in
`recbole_lda.evaluator.xauc` (numpy only) and are re-exported here.

MAE and RMSE are RecBole's own metrics (`mae`, `rmse`): every model's `predict` returns
watch time in seconds, so they are in seconds (RMSE in seconds too).

The metric classes follow RecBole's `LossMetric` contract; `recbole_lda.compat` registers
them in RecBole's evaluator so that `metrics: [MAE, XAUC]` and `valid_metric: XAUC` work.
"""

from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

from recbole_lda.evaluator.xauc import (  # noqa: F401  (re-exported)
    DADF_EDGES,
    HEGM_BLOCK_SIZE,
    all_conventions,
    bucket_metrics,
    bucket_names,
    concordance,
    xauc,
    xauc_blocks,
    xauc_cwm,
    xauc_dadf,
    xgauc,
    xgauc_cwm,
)


class XAUC(AbstractMetric):
    """XAUC over all evaluated interactions (bigger is better)."""

    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label"]
    smaller = False

    def calculate_metric(self, dataobject):
        preds = dataobject.get("rec.score").squeeze(-1).numpy()
        labels = dataobject.get("data.label").squeeze(-1).numpy()
        return {"xauc": round(xauc(labels, preds), self.decimal_place)}


class XGAUC(AbstractMetric):
    """XAUC per user, weighted by each user's pair count (bigger is better).

    Needs the user of every evaluated row: `data.user_id` is collected by the collector
    extension in `recbole_lda.compat`.
    """

    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label", "data.user_id"]
    smaller = False

    def calculate_metric(self, dataobject):
        preds = dataobject.get("rec.score").squeeze(-1).numpy()
        labels = dataobject.get("data.label").squeeze(-1).numpy()
        users = dataobject.get("data.user_id").numpy()
        return {"xgauc": round(xgauc(labels, preds, users), self.decimal_place)}


WATCH_TIME_METRICS = (XAUC, XGAUC)
