"""Ray, started or joined for a fleet, capped for a small machine, and kept on loopback when local.

`address = "local"` starts a private Ray for this run with the CPUs and GPUs the workers ask for,
an object store of `object_store_mb` (frames never go through it) and no dashboard. With
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` in the environment before Ray starts, Ray keeps every node of
a one-machine cluster on 127.0.0.1 (without it, Ray resolves 127.0.0.1 to the interface address
and its nodes talk over the network); `ensure_loopback` checks that they did.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from types import ModuleType
from typing import Any

from ..config.schema import ClusterConfig
from ..errors import ClusterError
from ..importing import import_optional

log = logging.getLogger("streamer.cluster")

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# A call on a worker whose connection broke fails after this long instead of Ray's default 1 s of
# waiting for the actor's death to be confirmed: the coordinator moves the sources either way.
FAILOVER_ENV = {"RAY_timeout_ms_task_wait_for_death_info": "100"}
NAMESPACE = "streamer"


def import_ray() -> ModuleType:
    """Ray, with the environment that keeps local nodes on loopback set first (Ray reads it when it
    is imported: where ray was imported before, set the variable before that yourself)."""
    for name, value in {**LOOPBACK_ENV, **FAILOVER_ENV}.items():
        os.environ.setdefault(name, value)
    return import_optional("ray", "cluster", "streamer cluster run")


def start(config: ClusterConfig, *, log_to_driver: bool = True) -> ModuleType:
    """Start a private Ray (`local`) or join `config.address`; returns the ray module. With
    `log_to_driver`, what the workers log shows on this process's stderr, prefixed with their pid."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"namespace": NAMESPACE, "include_dashboard": False, "log_to_driver": log_to_driver}
    if config.address == "local":
        options |= {
            "num_cpus": max(1, round(config.workers * config.cpus_per_worker + 0.49)),
            "num_gpus": config.workers * config.gpus_per_worker or None,
            "object_store_memory": config.object_store_mb << 20,
            "_node_ip_address": "127.0.0.1",
        }
    else:
        options["address"] = config.address
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a private Ray on loopback" if config.address == "local" else f"Ray at {config.address!r}"
        raise ClusterError(f"could not start {where}: {exc}") from exc
    if config.address == "local":
        ensure_loopback(ray)
    return ray


def ensure_loopback(ray: ModuleType) -> None:
    """ClusterError unless every live Ray node listens on a loopback address."""
    outside = [node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive") and not _is_loopback(node["NodeManagerAddress"])]
    if outside:
        raise ClusterError(
            f"Ray nodes listen on {sorted(set(outside))}, not on loopback: start Ray with"
            " RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in its environment (as `address = \"local\"` does)"
        )


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"
