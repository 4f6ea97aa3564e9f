"""Counting the server backends of one ``application_name``, to prove that what pg-jobmon
opens it also closes."""

from __future__ import annotations

import time

import psycopg


def backend_pids(conn: psycopg.Connection, application_name: str) -> list[int]:
    """The backends of ``application_name`` connected to ``conn``'s database now."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        " AND datname = current_database()",
        [application_name],
    ).fetchall()
    return [pid for (pid,) in rows]


def left_behind(conn: psycopg.Connection, application_name: str) -> list[int]:
    """Those backends still there once the closed ones had time to exit (a backend leaves
    pg_stat_activity a moment after its client closes the connection)."""
    deadline = time.monotonic() + 3
    while (pids := backend_pids(conn, application_name)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids
