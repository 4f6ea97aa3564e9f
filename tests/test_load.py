"""Load: 32 writer processes logging 1,000 steps each at once, on one job name and on several.

Every step must land exactly once, with unique ids, in its own job; every job must close; the
monitoring trigger must leave ``job_check_log`` exactly as the sequence of outcomes implies.
"""

from __future__ import annotations

import multiprocessing

from psycopg import sql

from jobmon_core import Jobmon

PROCESSES = 32
STEPS = 1000


def _log_a_job(dsn: str, schema: str, name: str, fail: bool, barrier) -> int:
    """One writer process: a job of ``STEPS`` steps, closed or failed; returns its job_id."""
    jm = Jobmon(dsn, schema=schema)
    job = jm.add_job(name)
    barrier.wait()  # all processes write at the same time
    for i in range(STEPS):
        jm.update_step(jm.add_step(job, f"step {i}"), "OK", f"{name} {job} {i}")
    if fail:
        jm.fail_job(job)
    else:
        jm.close_job(job)
    jm.close()
    return job


def _run_writers(dsn: str, schema: str, plan: list[tuple[str, bool]]) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(len(plan))
        with ctx.Pool(len(plan)) as pool:
            results = [
                pool.apply_async(_log_a_job, (dsn, schema, name, fail, barrier))
                for name, fail in plan
            ]
            return [r.get(timeout=600) for r in results]


def _query(admin, statement: str, schema: str, params: object = None) -> list[tuple]:
    """``statement`` with ``{}`` standing for the jobmon schema."""
    return admin.execute(sql.SQL(statement).format(sql.Identifier(schema)), params).fetchall()


def _assert_every_step_landed_once(admin, schema: str, jobs: list[int]) -> None:
    [(total, distinct, jobs_seen, bad)] = _query(
        admin,
        """SELECT count(*), count(DISTINCT step_id), count(DISTINCT job_id),
                  count(*) FILTER (WHERE status IS DISTINCT FROM 'OK' OR end_time IS NULL)
             FROM {}.job_detail WHERE job_id = ANY(%s)""",
        schema,
        [jobs],
    )
    assert (total, distinct, jobs_seen, bad) == (PROCESSES * STEPS, PROCESSES * STEPS, PROCESSES, 0)
    # Each step carries its own job's id in its message: no step landed in another's job.
    per_job = _query(
        admin,
        """SELECT job_id, count(DISTINCT action),
                  count(*) FILTER (WHERE message NOT LIKE '%% ' || job_id || ' %%')
             FROM {}.job_detail WHERE job_id = ANY(%s) GROUP BY job_id""",
        schema,
        [jobs],
    )
    assert all((actions, strays) == (STEPS, 0) for _, actions, strays in per_job)
    [(open_jobs,)] = _query(
        admin,
        "SELECT count(*) FROM {}.job_log WHERE job_id = ANY(%s) AND end_time IS NULL",
        schema,
        [jobs],
    )
    assert open_jobs == 0


def test_32_writers_on_one_job_name(jm, dsn, admin):
    plan = [("loaded job", False) for _ in range(PROCESSES)]
    jobs = _run_writers(dsn, jm.schema, plan)
    assert len(set(jobs)) == PROCESSES
    _assert_every_step_landed_once(admin, jm.schema, jobs)
    assert {r.status for r in jm.show_job("loaded job", limit=PROCESSES)} == {"OK"}
    assert jm.check_job_status()[0].alert_status == "OK"


def test_32_writers_on_several_job_names(jm, dsn, admin):
    # 8 names x 4 processes; the jobs of "LOAD 2" and "LOAD 5" fail, the others succeed.
    plan = [(f"load {i % 8}", i % 8 in (2, 5)) for i in range(PROCESSES)]
    jobs = _run_writers(dsn, jm.schema, plan)
    _assert_every_step_landed_once(admin, jm.schema, jobs)
    check_log = _query(
        admin,
        "SELECT job_name, alert_code, count(*) FROM {}.job_check_log GROUP BY 1, 2 ORDER BY 1",
        jm.schema,
    )
    assert check_log == [("LOAD 2", 3, 4), ("LOAD 5", 3, 4)]
    alerts = [(a.alert_code, a.job_name, a.alert_text) for a in jm.check_job_status()]
    assert alerts == [
        (3, "LOAD 2", "3 consecutive CRITICAL runs"),
        (3, "LOAD 5", "3 consecutive CRITICAL runs"),
    ]
