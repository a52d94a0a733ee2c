"""Every Ray Train call (Ray 2.6.3: `ray.train.torch.TorchTrainer`, `ray.air.ScalingConfig`,
`RunConfig`, `FailureConfig`, `CheckpointConfig`, `ray.air.session`, `ray.air.Checkpoint`) of
data-parallel training. Ray 2.7+ renamed most of them (../shared/docs/scale_notes.md): this
file is the one to change.

`fit(worker, job, ...)` runs `worker(job, session)` on `num_workers` Ray Train workers (one
CPU each; DDP over gloo on CPUs, NCCL with use_gpu) and returns the last checkpoint of rank 0
as a dict (saved as a folder with torch.save, read back with weights_only=True). `session` is `RaySession`: rank, world_size, `restored()` (the checkpoint a
restarted worker group resumes from) and `report(metrics, checkpoint)`. A worker group that
fails (a worker killed, a node lost) is restarted from the last checkpoint up to
`max_failures` times (FailureConfig).
"""

import os
import tempfile

from recbole_lda.distributed.ray_engine import ClusterWatch, gcs_address, import_ray, start

CHECKPOINT_FILE = "checkpoint.pt"


class RaySession:
    """The session of data_parallel.train_worker, on ray.air.session."""

    def __init__(self):
        from ray.air import Checkpoint, session

        self._session, self._checkpoint = session, Checkpoint
        self.rank, self.world_size = session.get_world_rank(), session.get_world_size()

    def restored(self):
        checkpoint = self._session.get_checkpoint()
        return read_checkpoint(checkpoint) if checkpoint is not None else None

    def report(self, metrics, checkpoint=None):
        if checkpoint is None:
            self._session.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="recbole-lda-checkpoint-") as folder:
            import torch

            torch.save(checkpoint, os.path.join(folder, CHECKPOINT_FILE))
            self._session.report(metrics, checkpoint=self._checkpoint.from_directory(folder))


def read_checkpoint(checkpoint):
    """The dict a worker reported, read with torch's weights-only loader (tensors and plain values;
    Ray 2.6's TorchCheckpoint.from_dict pickles, which torch >= 2.6 refuses to load by default)."""
    import torch

    with checkpoint.as_directory() as folder:
        return torch.load(os.path.join(folder, CHECKPOINT_FILE), map_location="cpu", weights_only=True)


def _loop(config):
    """Ray Train's train_loop_per_worker; the job comes from the object store (fit)."""
    import ray

    config["worker"](ray.get(config["job"]), RaySession())


def fit(worker, job, num_workers, address=None, use_gpu=False, max_failures=0, storage=None, name="train",
        on_cluster_lost=lambda: None):
    """Run `worker(job, RaySession())` on `num_workers` workers; rank 0's last checkpoint (dict).
    If the cluster disappears, `on_cluster_lost()` runs and the process ends with one line
    (ray_engine.ClusterWatch)."""
    ray = import_ray()
    from ray.air import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    start(address, None if address else num_workers)
    try:
        trainer = TorchTrainer(
            _loop,
            # the job (with the initial weights: 100+ MB with a 2M-row video table) goes through the
            # object store; in train_loop_config itself, Ray Tune serialises it into its experiment
            # state on every report (the driver's memory rose by GBs at each one)
            train_loop_config={"worker": worker, "job": ray.put(job)},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, trainer_resources={"CPU": 0},
                                         resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name=name, storage_path=storage, verbose=0,
                                 failure_config=FailureConfig(max_failures=max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        try:
            with ClusterWatch(gcs_address(), on_cluster_lost, shown=address):
                result = trainer.fit()
            if result.error is not None:
                raise result.error
        except Exception as err:  # noqa: BLE001 -- a worker's error, a lost node or cluster: one line
            cause = err.__cause__ or err
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:300]
            raise RuntimeError(f"ray engine: training failed after {max_failures} restart(s) at most: {first}") from err
        return read_checkpoint(result.checkpoint)
    finally:
        ray.shutdown()


def gpus_available(address=None):
    """GPUs that Ray would see here (address=None) or on the cluster; 0 without starting Ray locally."""
    if address is None:
        import torch

        return torch.cuda.device_count()
    ray = import_ray()
    start(address)
    try:
        return int(ray.cluster_resources().get("GPU", 0))
    finally:
        ray.shutdown()
