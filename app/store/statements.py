"""The statements the store's modules build from a table's column tuple (`app.core` declares the columns).

Composed once, at import, by the module that runs them: the names are quoted
identifiers, the values named placeholders (`%(column)s`), so a row's column
dict is the statement's parameters.
"""

from __future__ import annotations

from psycopg import sql


def columns(names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _values(names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Placeholder(c) for c in names)


def select(table: str, names: tuple[str, ...]) -> sql.Composed:
    """`SELECT names FROM table`, for a caller to add its WHERE and ORDER BY to."""
    return sql.SQL("SELECT {} FROM {}").format(columns(names), sql.Identifier(table))


def select_for_update(table: str, names: tuple[str, ...], key: str) -> sql.Composed:
    """The row whose `key` is the one parameter (`%s`), locked until the transaction ends."""
    return sql.SQL("SELECT {} FROM {} WHERE {} = %s FOR UPDATE").format(
        columns(names), sql.Identifier(table), sql.Identifier(key)
    )


def upsert(table: str, names: tuple[str, ...], key: str) -> sql.Composed:
    """Insert the row, or overwrite every other column of the row with its `key`."""
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}").format(
        sql.Identifier(table),
        columns(names),
        _values(names),
        sql.Identifier(key),
        sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in names if c != key),
    )


def insert_if_absent(table: str, names: tuple[str, ...], key: str, returning: bool = False) -> sql.Composed:
    """Insert the row unless one with its `key` is there; `returning`: the statement answers the key
    of a row it inserted (no row: it was there)."""
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING").format(
        sql.Identifier(table), columns(names), _values(names), sql.Identifier(key)
    )
    if returning:
        statement += sql.SQL(" RETURNING {}").format(sql.Identifier(key))
    return statement
