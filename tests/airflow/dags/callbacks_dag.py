"""Test DAG for the jobmon task and DAG callbacks (run with dag.test())."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, get_current_context, task

from jobmon_airflow._compat import AirflowSkipException
from jobmon_airflow.callbacks import jobmon_dag_callbacks, jobmon_task_callbacks, merge_callbacks

SEEN: list[str] = []  # the user's own callback, kept next to ours


def users_own_callback(context) -> None:
    SEEN.append(context["ti"].task_id)


default_args = {
    **merge_callbacks(jobmon_task_callbacks(), {"on_success_callback": users_own_callback}),
    "retry_delay": timedelta(seconds=0),
}

with DAG(
    "jobmon_test_callbacks",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=default_args,
    params={"fail": False, "reason": "totals do not match"},
    **jobmon_dag_callbacks(),
) as callbacks_dag:

    @task
    def extract() -> list[int]:
        return [1, 2]

    @task(retries=1)
    def flaky() -> None:
        if get_current_context()["ti"].try_number == 1:
            raise ConnectionError("database restarting")

    @task
    def skipper() -> None:
        raise AirflowSkipException("nothing new to load")

    @task
    def load(part: int) -> int:
        return part

    @task(trigger_rule="none_failed")
    def finish() -> None:
        params = get_current_context()["params"]
        if params["fail"]:
            # markers, as Airflow's API would refuse a run conf holding the characters
            text = params["reason"].replace("<NUL>", "\x00").replace("<SURROGATE>", "\udcff")
            raise ValueError(text)

    parts = extract()
    loaded = load.expand(part=parts)
    [flaky(), skipper(), loaded] >> finish()
