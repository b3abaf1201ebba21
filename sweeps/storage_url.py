"""The ``--storage`` value: checked, given its installed database driver, and never shown with its password.

Accepted forms:

- a journal file path (the default is ``SWEEP_DIR/optuna.journal``; no server);
- ``postgresql://user[:password]@host[:port]/db`` (also ``postgres://``): SQLAlchemy 2 reads a bare
  ``postgresql://`` as psycopg2 (``postgresql+psycopg2``) and psycopg 3 needs ``postgresql+psycopg``; we
  take whichever of the two is installed, so the plain form of the README works with either;
- any other SQLAlchemy URL whose driver is installed (``sqlite:///file.db`` for one worker only).

A password never leaves this process through argv, a file or a message: :func:`mask` replaces it
with ``***`` wherever the URL is shown, launchers hand the URL to workers in the environment
variable :data:`STORAGE_ENV` (as libpq clients take ``PGPASSWORD``), and ``sweep.json`` records the
masked form only. ``--storage`` itself may be left out when :data:`STORAGE_ENV` is set.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from vla_core.errors import BadInput

STORAGE_ENV = "SCALING_STORAGE"
"""Environment variable holding the storage URL (read when ``--storage`` is not given)."""

# user:password@ in the netloc of any scheme://
_PASSWORD_RE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*):(?P<pw>[^@/\s]*)@")


def mask(text: str | None) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    if not text:
        return "" if text is None else text
    return _PASSWORD_RE.sub(lambda m: f"{m.group('head')}:***@", str(text))


def scrub(text: str, url: str | None) -> str:
    """``text`` (say, a driver's error message) with ``url``'s password masked and removed wherever it appears."""
    out = mask(text)
    pw = password(url)
    return out.replace(pw, "***") if pw else out


def password(url: str | None) -> str | None:
    """The password in ``url``, or None."""
    m = _PASSWORD_RE.search(url or "")
    return m.group("pw") if m and m.group("pw") else None


def from_env(value: str | None) -> str | None:
    """``--storage`` as given, else :data:`STORAGE_ENV`, else None (the default journal)."""
    if value is not None:
        return value
    return os.environ.get(STORAGE_ENV) or None


def is_url(storage: str) -> bool:
    """True for a database URL, False for a journal file path."""
    return "://" in storage


def _postgres_driver() -> str:
    """``postgresql+psycopg`` (psycopg 3) or ``postgresql+psycopg2``, whichever is installed."""
    for module, name in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise BadInput("--storage postgresql://...: no PostgreSQL driver installed; pip install 'vla-scaling[postgres]'")


def check(storage: str | None, workers: int = 1) -> str | None:
    """Validate ``storage`` and return the form to open (the driver made explicit); None stays None.

    Args:
        storage: ``--storage`` (a URL or a journal file path), or None for the default journal.
        workers: Worker processes on this machine (SQLite is refused with more than one).

    Raises:
        BadInput: One line, the password masked: empty value, a folder, an unknown scheme, a driver
            that is not installed, a SQLite file in a missing folder, SQLite with several workers.
    """
    if storage is None:
        return None
    if not storage.strip():
        raise BadInput("--storage is empty: give a database URL (postgresql://user@host/db) or a journal file path")
    if not is_url(storage):
        path = Path(storage)
        if path.is_dir():
            raise BadInput(f"--storage {storage}: is a folder; give a journal file (e.g. {path / 'optuna.journal'}) "
                           "or a database URL")
        if not path.parent.is_dir():
            raise BadInput(f"--storage {storage}: folder {path.parent} does not exist")
        return storage
    import sqlalchemy
    from sqlalchemy.engine import make_url

    shown = mask(storage)
    try:
        url = make_url(storage)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise BadInput(f"--storage {shown}: not a valid database URL (postgresql://user@host/db)") from None
    backend = url.get_backend_name()
    if backend == "postgres":  # the libpq/Heroku spelling; SQLAlchemy 2 knows only "postgresql"
        url = url.set(drivername="postgresql" + url.drivername[len("postgres"):])
        backend = "postgresql"
    if url.drivername == "postgresql":
        url = url.set(drivername=_postgres_driver())
    try:
        dialect = url.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise BadInput(f"--storage {shown}: unknown database {url.drivername!r}; use postgresql://user@host/db "
                       "or a journal file path") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise BadInput(f"--storage {shown}: the {url.drivername} driver is not installed "
                       f"({exc.name or exc}); pip install it, or use postgresql://") from None
    if backend == "sqlite":
        if workers > 1:
            raise BadInput(f"--storage {shown}: SQLite is not safe with several workers; use the default journal "
                           "or PostgreSQL")
        db = url.database
        if not db or db == ":memory:":
            raise BadInput(f"--storage {shown}: an in-memory SQLite database is not shared with workers; "
                           "give a file (sqlite:///path/sweep.db)")
        if Path(db).is_dir():
            raise BadInput(f"--storage {shown}: {db} is a folder, not a database file")
        if not Path(db).parent.is_dir():
            raise BadInput(f"--storage {shown}: folder {Path(db).parent} does not exist")
    return url.render_as_string(hide_password=False)
