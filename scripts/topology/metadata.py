"""Read-only queries of Airflow's metadata database (PostgreSQL)."""

from __future__ import annotations

from typing import Any

import psycopg2


class Metadata:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg2.connect(self._dsn) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            result = cursor.fetchall()
        connection.close()
        return result

    def run_states(self, dag_ids: tuple[str, ...]) -> dict[tuple[str, str], str]:
        rows = self.rows(
            "SELECT dag_id, run_id, state FROM dag_run WHERE dag_id = ANY(%s)", list(dag_ids)
        )
        return {(dag_id, run_id): state for dag_id, run_id, state in rows}

    def task_states(self, dag_id: str, run_id: str, task_id: str) -> list[tuple[int, str, Any]]:
        """``(map_index, state, trigger_id)`` of each instance of one task in one run."""
        return [
            (map_index, state, trigger_id)
            for map_index, state, trigger_id in self.rows(
                "SELECT map_index, state, trigger_id FROM task_instance "
                "WHERE dag_id = %s AND run_id = %s AND task_id = %s ORDER BY map_index",
                dag_id,
                run_id,
                task_id,
            )
        ]

    def count(self, sql: str, *params: Any) -> int:
        return int(self.rows(sql, *params)[0][0])
