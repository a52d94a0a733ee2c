"""Everything recbole-lda changes inside RecBole 1.2.1, in one place.

Each patch names the upstream behaviour it works around. Importing this module changes
nothing: `apply()` does, once (it is idempotent), where a run starts
(`recbole_lda.quick_start.run`, the tuner's trials, the test suite's fixtures). No other module
patches RecBole.
"""

import warnings

from recbole.evaluator import collector as _collector
from recbole.evaluator import register as _register
from recbole.trainer import trainer as _trainer

from recbole_lda.evaluator.metrics import WATCH_TIME_METRICS

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


def _no_empty_checkpoint_dir():
    """RecBole's Trainer creates `checkpoint_dir` (./saved/ by default) when it is built, even
    for a run that writes no checkpoint, leaving an empty folder in the working directory.
    Our trainer never writes a file there unless `keep_checkpoint` is set, and then creates
    the folder itself (`recbole_lda.utils.fileio.atomic_output`), so the Trainer's module
    gets an ensure_dir that creates nothing."""
    _trainer.ensure_dir = lambda path: None


def _quiet_upstream_warnings():
    """Warnings raised inside RecBole's own code that a user can do nothing about:
    - Trainer._train_epoch builds `torch.cuda.amp.GradScaler(...)` once per epoch, which
      torch >= 2.4 deprecates (FutureWarning, once per epoch);
    - Dataset._fill_nan uses chained `fillna(inplace=True)`, which pandas 2.2+ warns about
      (FutureWarning; it still fills under pandas 2, see README on pandas 3);
    - Dataset._get_field_from_config / normalisation code call `Series.agg`-style
      reductions that pandas warns about."""
    for message in (r".*torch\.cuda\.amp\.GradScaler.*", r".*torch\.cuda\.amp\.autocast.*"):
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    for module in (r"recbole\..*",):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)


def apply():
    global _applied
    if _applied:
        return
    _register_metrics()
    _collect_user_ids()
    _no_tensorboard_dir()
    _no_empty_checkpoint_dir()
    _quiet_upstream_warnings()
    _applied = True
