"""RecBole's trainer for watch-time models: best weights kept in memory, time per epoch,
validation history, the model's own parameter groups."""

from recbole_lda.trainer.trainer import WatchTimeTrainer, interactions

__all__ = ["WatchTimeTrainer", "interactions"]
