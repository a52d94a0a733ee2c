"""RecBole's Trainer, plus the per-epoch training time that the results file reports."""

from time import perf_counter

from recbole.trainer import Trainer


class WatchTimeTrainer(Trainer):
    """RecBole's Trainer unchanged, except that it records how long each training epoch
    took (`epoch_times`, seconds, evaluation excluded)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epoch_times = []

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_times.append(perf_counter() - start)
        return loss
