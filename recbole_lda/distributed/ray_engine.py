"""Every Ray call of the partitioned computations (Ray core 2.6.3: `ray.init`, `ray.remote`,
`ray.get`, `ray.shutdown`). Ray Data is not used: it does not work with this project's pins
(see ../shared/docs/environment.md, "Ray 2.6.3 beyond Tune"); tasks read Parquet and CSV
with pyarrow themselves.

`RayExecutor` is the executor of `recbole_lda.evaluator.partitioned.evaluate`: `submit`
runs a function as a Ray task (one CPU each) and returns object references, which later
tasks take as arguments without the driver fetching them; `get` fetches results.
"""

import os
import warnings


def import_ray():
    """`ray`, imported without the warning Ray 2.6.3 gives on importing pkg_resources."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ray

    return ray


def start(address=None, num_cpus=None):
    """Connect to the cluster at `address` (HOST:PORT), or start a local Ray instance of
    `num_cpus` CPUs; returns the `ray` module."""
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    else:
        # address="local": always a new instance (never a cluster that `ray start` left on this machine)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
    return ray


class RayExecutor:
    """Tasks on a Ray cluster at `address` (HOST:PORT), or on a local Ray instance of
    `num_workers` CPUs started here and stopped by `close`."""

    def __init__(self, address=None, num_workers=None):
        ray = start(address, num_workers)
        self._ray, self._remote = ray, {}
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self.nodes = sum(1 for node in ray.nodes() if node["Alive"])

    def submit(self, fn, *args, num_returns=1):
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(num_cpus=1)(fn)
        return self._remote[fn].options(num_returns=num_returns).remote(*args)

    def get(self, handles):
        return self._ray.get(handles)

    def close(self):
        self._ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def gcs_address():
    """HOST:PORT of the cluster this process is connected to (its GCS)."""
    return import_ray().get_runtime_context().gcs_address


class ClusterWatch:
    """Ends this process with one line when the cluster disappears. Ray 2.6.3's driver, once the
    cluster's GCS stops answering, waits 60 s and then terminates the process from C++
    (gcs_rpc_client: "Failed to connect to GCS within 60 seconds ... The program will
    terminate"), so no Python `finally` runs and a run would leave its folder behind. This
    thread connects to the GCS's TCP port every `interval` s; after `grace` s without an answer
    it calls `on_lost()` (the caller's clean-up), writes `error: <message>` to standard error
    and exits with status 1."""

    def __init__(self, address, on_lost, grace=10.0, interval=1.0, shown=None):
        import threading

        host, port = address.rsplit(":", 1)
        self.target, self.address, self.on_lost = (host, int(port)), shown or address, on_lost
        self.grace, self.interval = grace, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cluster-watch", daemon=True)

    def answers(self):
        import socket

        try:
            with socket.create_connection(self.target, timeout=self.interval):
                return True
        except OSError:
            return False

    def _watch(self):
        import time

        last_answer = time.monotonic()
        while not self._stop.wait(self.interval):
            if self.answers():
                last_answer = time.monotonic()
            elif time.monotonic() - last_answer >= self.grace:
                self._end()

    def _end(self):
        import logging
        import sys

        message = (f"ray engine: the Ray cluster at {self.address} stopped answering for {self.grace:.0f} s; "
                   "the run stopped and wrote no results, predictions or model")
        try:
            self.on_lost()
            logging.getLogger(__name__).error(message)
            for handler in logging.getLogger().handlers:
                handler.flush()
        finally:
            sys.stderr.write(f"error: {message}\n")
            sys.stderr.flush()
            os._exit(1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
