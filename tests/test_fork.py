"""A Jobmon used before ``fork()`` keeps working in the parent and in every child.

Each scenario runs as a script of its own, so that its processes fork and exit as real
programs do (``sys.exit``, the end of a ``multiprocessing`` child, ``os._exit``), not
inside pytest. The parent logs a step before forking, so that it holds what a child must
not inherit: reserved ids, and in buffered mode a queued step not yet finished. Then a
parent and three children each log five steps. Every step must be in the table once, with
its own text: a step id given out twice would merge two steps into one row.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

CHILDREN = 3
STEPS = 5

SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys, time
    from jobmon_core import Jobmon

    dsn, schema, mode, ending = sys.argv[1:]
    buffered = mode == "buffered"
    # a timer flush only when the test is about the timer: otherwise only exits flush
    interval = 0.3 if ending == "timer" else 60
    jm = Jobmon(dsn, schema=schema, buffered=buffered, flush_interval=interval)
    job = jm.add_job("forked " + mode)
    before = jm.add_step(job, "parent before fork")
    if buffered:
        jm.flush()
        pending = jm.add_step(job, "parent pending")  # queued: the parent's, not the children's
    else:
        jm.update_step(before, "OK", "done: parent before fork")
    print(job, flush=True)

    def child(k):
        os.close(w)
        os.read(r, 1)  # wait until the parent has finished and flushed its own steps
        for i in range({steps}):
            action = f"child {{k}} step {{i}}"
            jm.update_step(jm.add_step(job, action), "OK", "done: " + action)
        if ending == "timer":
            time.sleep(1.5)  # five timer periods: no flush but the timer's
            os._exit(0)
        # "exit": return; the process ends as a program does (atexit, or multiprocessing's
        # own exit, which is os._exit() after its finalizers)

    r, w = os.pipe()
    pids, processes = [], []
    for k in range({children}):
        if ending == "multiprocessing":
            p = multiprocessing.get_context("fork").Process(target=child, args=(k,))
            p.start()
            processes.append(p)
        else:
            pid = os.fork()
            if pid == 0:
                try:
                    child(k)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    sys.stderr.flush()
                    os._exit(1)
                sys.exit(0)
            pids.append(pid)
    os.close(r)
    for i in range({steps}):
        action = f"parent step {{i}}"
        jm.update_step(jm.add_step(job, action), "OK", "done: " + action)
    if buffered:
        jm.update_step(before, "OK", "done: parent before fork")
        jm.flush()
        jm.update_step(pending, "OK", "done: parent pending")
        jm.flush()
    os.close(w)  # the children go on now
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    for p in processes:
        p.join(30)
        codes.append(p.exitcode)
    print(codes, flush=True)
    jm.close_job(job)
    jm.close()
""").format(steps=STEPS, children=CHILDREN)


def run_script(dsn: str, schema: str, mode: str, ending: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, dsn, schema, mode, ending],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[1] == str([0] * CHILDREN), done.stderr


def expected_actions(mode: str) -> list[str]:
    actions = ["parent before fork"] + [f"parent step {i}" for i in range(STEPS)]
    if mode == "buffered":
        actions.append("parent pending")
    actions += [f"child {k} step {i}" for k in range(CHILDREN) for i in range(STEPS)]
    return actions


@pytest.mark.parametrize(
    ("mode", "ending"),
    [
        ("durable", "exit"),
        ("buffered", "exit"),
        ("buffered", "timer"),
        ("buffered", "multiprocessing"),
        ("durable", "multiprocessing"),
    ],
)
def test_a_parent_and_its_children_each_log_every_step_once(dsn, jm, rows, mode, ending):
    run_script(dsn, jm.schema, mode, ending)
    details = rows("job_detail")
    assert sorted(d["action"] for d in details) == sorted(expected_actions(mode))
    # one row per step, each with its own text: nothing merged, nothing overwritten
    assert [d for d in details if d["message"] != "done: " + d["action"]] == []
    assert all(d["status"] == "OK" for d in details)
    assert len({d["step_id"] for d in details}) == len(details)
    assert rows("job_log")[0]["status"] == "OK"


def test_cancel_in_a_child_spares_the_parents_statement(jm, admin):
    """A child's ``cancel()`` (a SIGTERM handler inherited from the parent, say) must not
    cancel the statement the parent's session is running: the child's copy of the
    connection carries the parent's cancel key."""
    jm.add_job("cancel in child")
    backend = jm._connection.backend_pid
    outcome: list[object] = []

    def long_statement() -> None:
        try:
            jm._connection.run(lambda conn, _: conn.execute("SELECT pg_sleep(1.5)"))
            outcome.append("finished")
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=long_statement)
    thread.start()
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and not admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE '%%pg_sleep%%'"
            " AND state = 'active'",
            [backend],
        ).fetchone()
    ):
        time.sleep(0.02)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        jm.cancel()
        os._exit(0)
    os.waitpid(child, 0)
    thread.join(10)
    assert outcome == ["finished"]
