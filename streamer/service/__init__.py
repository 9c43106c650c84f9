"""The daemon layer above the pipeline: HTTP server, metrics, checkpoints, signals and reload."""
