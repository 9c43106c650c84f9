"""A camera fleet larger than one machine, on Ray Core (`streamer cluster run`, docs/cluster.md).

    runtime.py      start a private Ray on loopback, or join a cluster; capped for small machines
    slots.py        the state_dir layout: per-slot sink files and spools, owner files (fencing), checkpoints
    worker.py       the Ray actor: one single-node pipeline on its own event loop
    coordinator.py  placement, pings, failover
    server.py       the fleet's HTTP API (the single-node server's checks); federation.py its /metrics
    run.py          open_fleet / run_cluster

Nothing here is imported by `import streamer`; ray is imported when a fleet starts.
"""
