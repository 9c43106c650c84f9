"""What `streamer run` and `streamer status` show on a terminal, drawn with rich.

- `tables.py`: a status body (what `GET /status` answers, service/status.py) as rich tables: one
  row per live source (state, fps in/out, drops by reason, reconnects, latency p50/p99) and one per
  sink (written, queued, failed). `streamer status URL` prints them from a daemon's /status.
- `display.py`: `RunDisplay`, the live view of `streamer run` on a terminal: the model's download
  (bytes, speed), a bar with ETA per file source, the tables for the rest. It refreshes a few
  times a second from the counters only, and routes log lines above itself.
- `remote.py`: reading a daemon's /status (`streamer status`).

rich is imported by these modules, which only the CLI imports (never `import streamer`).
"""
