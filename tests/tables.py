"""Reading and writing the jobmon tables directly, as a user's hand-written SQL would."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.abc import Params
from psycopg.rows import dict_row


class Rows:
    """Read the jobmon tables of one schema, as dicts, for assertions."""

    def __init__(self, conn: psycopg.Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def __call__(self, table: str, where: str = "TRUE", params: Params | None = None) -> list[dict]:
        query = sql.SQL("SELECT * FROM {} WHERE {} ORDER BY 1, 2").format(
            sql.Identifier(self.schema, table), sql.SQL(where)
        )
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def execute(self, statement: str, params: Params | None = None) -> None:
        """Run hand-written SQL with search_path set to the jobmon schema."""
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema))
            )
            self.conn.execute(statement, params)
