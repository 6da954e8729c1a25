"""Executors run independent sweep points: in-process (default) or as Ray tasks on a cluster.

An executor only maps a function over argument tuples and yields results in completion order; the
driver appends each row to the store as it arrives, so resume works the same for both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dekasim.errors import ConfigError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """Runs every task in this process, in order."""

    name = "local"

    def map_unordered(self, fn: Callable[..., Any], tasks: Iterable[tuple]) -> Iterator[Any]:
        for args in tasks:
            yield fn(*args)

    def close(self) -> None:
        pass


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("executor", "ray", "the optional Ray package installed",
                          "pip install 'dekasim[ray]' (or: pip install ray), on the driver and every worker") from None
    return ray


def _ray_worker_call(fn: Callable[..., Any], args: tuple) -> Any:
    """Runs inside a Ray worker: one intra-op thread per task (Ray gives each task one CPU)."""
    import torch

    torch.set_num_threads(1)
    return fn(*args)


class RayExecutor:
    """Sends each task to Ray (``ray.remote``), one CPU per task, and yields results as they finish.

    :param address: a running cluster (``"ray://head:10001"``, ``"auto"``, or ``"host:6379"``); None
        starts a local Ray instance for this run and stops it at :meth:`close`.
    :param num_cpus: CPUs of the local instance (ignored with ``address``).
    :param max_in_flight: tasks submitted at once; default twice the cluster's CPUs.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 max_in_flight: int | None = None) -> None:
        ray = _import_ray()
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError) as exc:
                raise ConfigError("--address", address, f"a reachable Ray cluster ({exc})",
                                  "start one with `ray start --head`, or leave --address out for a local one") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or max(2 * cpus, 1)

    def map_unordered(self, fn: Callable[..., Any], tasks: Iterable[tuple]) -> Iterator[Any]:
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_worker_call)
        fn_ref = ray.put(fn)
        pending: list = []
        it = iter(tasks)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < self.max_in_flight:
                try:
                    args = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending.append(remote.remote(fn_ref, args))
            if not pending:
                break
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(name: str, address: str | None = None, num_cpus: int | None = None):
    """The executor called ``name`` (``"local"`` or ``"ray"``)."""
    if name == "local":
        if address:
            raise ConfigError("--address", address, "only with --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, num_cpus=num_cpus)
    raise ConfigError("executor", name, f"one of {list(EXECUTORS)}")
