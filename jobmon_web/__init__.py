"""The pg-jobmon page and metrics: one read-only FastAPI app (health, jobs, one run, /metrics).

Served standalone by ``jobmon web``, mounted in Airflow's API server by the provider's
``pg_jobmon_web`` plugin; ``jobmon metrics`` prints the same exposition text. It needs the
``web`` extra (``pip install "pg-jobmon[web]"``); ``jobmon_core`` never imports it, so the
core keeps working without FastAPI. Nothing is imported here: ``jobmon_web.app`` is the app,
``jobmon_web.database`` its only door to PostgreSQL, ``jobmon_web.metrics`` the metrics.
"""

MISSING_EXTRA = (
    "the page and the metrics need the web extra: pip install 'pg-jobmon[web]' "
    "(FastAPI, uvicorn, Jinja2, prometheus-client)"
)
