"""RecBole's Trainer, with a run's best model held by the run itself, and one log line per epoch.

RecBole's Trainer saves the best model to `saved/<model>-<date and time to the second>.pth`
and reads it back for the test evaluation. Two runs started in the same second in one
folder then share that file, and one of them reports the other's model. Here the best
weights are kept in the trainer's memory (a copy of the state dict), so no run can read
another's; a checkpoint file is written only when `keep_checkpoint` is set, under a name
unique to the run, atomically, and holding tensors and plain values only (it loads with
`torch.load(weights_only=True)`).
"""

import logging
import os
import time
import uuid
from time import perf_counter

import torch
from recbole.trainer import Trainer

from recbole_lda.utils.fileio import atomic_output

logger = logging.getLogger(__name__)


def interactions(data_loader, device):
    """The Interaction of each batch of an evaluation loader, on `device` (RecBole's full-sort
    loaders yield tuples whose first element is the Interaction)."""
    for batch in data_loader:
        yield (batch[0] if isinstance(batch, tuple) else batch).to(device)


def unique_checkpoint_path(config):
    """`<checkpoint_dir>/<model>-<dataset>-<time>-<pid>-<random>.pth`: never shared by two runs."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{config['model']}-{config['dataset']}-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}.pth"
    return os.path.join(config["checkpoint_dir"], name)


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class WatchTimeTrainer(Trainer):
    """RecBole's Trainer (optimiser, epochs, early stopping on `valid_metric`, evaluator),
    except that:

    - the best model is held in memory (`best_state`) and `evaluate(load_best_model=True)`
      restores it; a file is written only with `keep_checkpoint: True` (`checkpoint_path`);
    - it records how long each training epoch took (`epoch_times`, seconds, evaluation
      excluded) and validation scores per epoch (`valid_history`);
    - it logs one line per epoch (call `fit(..., verbose=False)` to silence RecBole's own
      multi-line output).
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epoch_times = []
        self.valid_history = []
        self.best_state = None
        self.checkpoint_path = unique_checkpoint_path(config) if config["keep_checkpoint"] else None
        self.saved_model_file = self.checkpoint_path  # RecBole's attribute; None when nothing is written
        self._last_train = None
        if hasattr(model, "optimizer_param_groups"):  # per-module learning rates (LDA's anchor_lr_scale)
            self.optimizer = self._build_optimizer(params=model.optimizer_param_groups(self.learning_rate))

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if hasattr(self.model, "set_epoch"):  # epoch-dependent settings (LDA's temperature schedule)
            self.model.set_epoch(epoch_idx)
        start = perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        seconds = perf_counter() - start
        self.epoch_times.append(seconds)
        self._last_train = (epoch_idx, loss, seconds)
        if self.eval_step <= 0 or (epoch_idx + 1) % self.eval_step != 0:
            logger.info(f"epoch {epoch_idx}: {self._loss_text(loss)}, {seconds:.1f} s")
        return loss

    def _loss_text(self, loss):
        if isinstance(loss, tuple):
            names = getattr(self.model, "loss_names", ())
            parts = ", ".join(f"{n} {v:.4f}" for n, v in zip(names, loss))
            return f"train loss {sum(loss):.4f} ({parts})"
        return f"train loss {loss:.4f}"

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        epoch_idx, loss, seconds = self._last_train
        self.valid_history.append({"epoch": epoch_idx, "valid_score": valid_score, **dict(valid_result)})
        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in valid_result.items())
        logger.info(f"epoch {epoch_idx}: {self._loss_text(loss)}, {seconds:.1f} s; valid {metrics}")
        return valid_score, valid_result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """Keep a copy of the current (best so far) weights; write them to the run's own file
        only when asked. Called by RecBole's fit at every improvement of `valid_metric`."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.best_state = {"epoch": epoch, "state_dict": state, "other_parameter": self.model.other_parameter()}
        if self.checkpoint_path:
            with atomic_output(self.checkpoint_path) as tmp:
                torch.save({"epoch": epoch, "best_valid_score": float(self.best_valid_score), "state_dict": state}, tmp)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """RecBole's evaluate; `load_best_model` restores this run's best weights from memory
        (or, given `model_file`, from a checkpoint written by `_save_checkpoint`)."""
        if eval_data and load_best_model:
            if model_file:
                checkpoint = torch.load(model_file, map_location=self.device, weights_only=True)
            elif self.best_state is None:
                raise RuntimeError("no best model to evaluate: the run never validated (check epochs and eval_step)")
            else:
                checkpoint = self.best_state
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
