"""compare.py's contenders: one runner script each, run as a process of its own (the peers with their venv's Python).

Every runner prints one `BENCH_RESULT {json}` line (measure.py, standard library only, so the peers'
venvs can import it too); venvs.py builds the peers' venvs; rtsp_clip_server.py serves the live clip.
"""
