"""Everything recbole-lda changes inside RecBole 1.2.1, in one place.

Each patch names the upstream behaviour it works around. `apply()` is idempotent and is
called once when `recbole_lda` is imported; no other module patches RecBole.
"""

import torch
from recbole.evaluator import collector as _collector
from recbole.evaluator import register as _register
from recbole.trainer import trainer as _trainer

from recbole_lda.metrics import WATCH_TIME_METRICS

_applied = False


def _register_metrics():
    """RecBole discovers metrics only in the module `recbole.evaluator.metrics` (at import,
    into four module-level registries). Adding our classes to those same objects, in place,
    makes them usable as `metrics` and `valid_metric` (Config and Evaluator read them)."""
    for cls in WATCH_TIME_METRICS:
        name = cls.__name__.lower()
        _register.metrics_dict[name] = cls
        _register.metric_information[name] = cls.metric_need
        _register.metric_types[name] = cls.metric_type
        if cls.smaller and name not in _register.smaller_metrics:
            _register.smaller_metrics.append(name)


def _collect_user_ids():
    """RecBole's Collector gathers only scores and labels for value metrics; XGAUC also needs
    the user of each row. Collect `data.user_id` when a metric asks for it, and drop it after
    each evaluation like the other per-evaluation entries (or it would grow across epochs)."""
    original_collect = _collector.Collector.eval_batch_collect
    original_struct = _collector.Collector.get_data_struct

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        original_collect(self, scores_tensor, interaction, positive_u, positive_i)
        if self.register.need("data.user_id"):
            users = interaction[self.config["USER_ID_FIELD"]].to(self.device)
            self.data_struct.update_tensor("data.user_id", users)

    def get_data_struct(self):
        returned = original_struct(self)
        if "data.user_id" in self.data_struct:
            del self.data_struct["data.user_id"]
        return returned

    _collector.Collector.eval_batch_collect = eval_batch_collect
    _collector.Collector.get_data_struct = get_data_struct


def _load_own_checkpoint(path, device):
    """torch >= 2.6 loads with weights_only=True by default, and RecBole's checkpoints pickle
    the Config, so `Trainer.evaluate(load_best_model=True)` fails. We load with
    weights_only=False, which runs pickled code: only ever call this on a checkpoint that
    this program wrote during the same run (the trainer's own `saved_model_file`)."""
    return torch.load(path, map_location=device, weights_only=False)


def _fix_checkpoint_loading():
    original_evaluate = _trainer.Trainer.evaluate

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint = _load_own_checkpoint(model_file or self.saved_model_file, self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
        return original_evaluate(self, eval_data, load_best_model=False, show_progress=show_progress)

    def resume_checkpoint(self, resume_file):
        # Same weights_only issue as above, for RecBole's resume path.
        checkpoint = _load_own_checkpoint(str(resume_file), self.device)
        self.saved_model_file = str(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])

    _trainer.Trainer.evaluate = evaluate
    _trainer.Trainer.resume_checkpoint = resume_checkpoint


class _NullWriter:
    """Stands in for tensorboard's SummaryWriter: accepts every call, writes nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _no_tensorboard_dir():
    """RecBole's Trainer always creates a tensorboard SummaryWriter under ./log_tensorboard
    (a fixed path in the current directory, one folder per run). We do not use it, and Ray
    trials and tests would litter their working directories, so the Trainer gets a writer
    that does nothing."""
    _trainer.get_tensorboard = lambda logger: _NullWriter()


def apply():
    global _applied
    if _applied:
        return
    _register_metrics()
    _collect_user_ids()
    _fix_checkpoint_loading()
    _no_tensorboard_dir()
    _applied = True
