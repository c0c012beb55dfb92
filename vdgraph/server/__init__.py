"""`vdgraph serve`: a job server with a persistent queue, live progress and previews, and a browser page.

app.py holds the HTTP API and its security rules, store.py the SQLite queue and history, worker.py the worker
thread (one long-lived Executor) and the per-job event streams; static/ the page (plain HTML, CSS and JavaScript,
no build step). See docs/server.md.
"""
