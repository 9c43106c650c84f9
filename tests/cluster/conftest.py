"""A real Ray cluster on this machine, loopback only: a head (no CPUs: it runs no worker) and two
nodes of two CPUs, made once per module (Ray is slow to start). Skipped where ray is not installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from streamer.cluster.runtime import LOOPBACK_ENV, import_ray

for _name, _value in LOOPBACK_ENV.items():
    os.environ.setdefault(_name, _value)  # Ray reads it when it is imported, so before that

OBJECT_STORE_BYTES = 80 << 20  # Ray's floor is 75 MiB; nothing big goes through it
NODE_CPUS = 2


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    pytest.importorskip("ray", reason="needs ray: pip install 'streamer[cluster]'")
    ray = import_ray()
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": OBJECT_STORE_BYTES, "include_dashboard": False},
    )
    for _ in range(2):
        add_node(cluster)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="streamer-tests", log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def add_node(cluster: Any) -> Any:
    return cluster.add_node(num_cpus=NODE_CPUS, object_store_memory=OBJECT_STORE_BYTES)
