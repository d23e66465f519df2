"""A throwaway PostgreSQL server (Debian's postgresql package) for tests, or None where there is none."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile

from serve_helpers import free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@contextlib.contextmanager
def temporary_postgres():
    """Yields a SQLAlchemy URL of a fresh server on 127.0.0.1, or None if PostgreSQL or psycopg is missing."""
    if os.environ.get("IMAGESAFETY_TEST_POSTGRES_URL"):
        yield os.environ["IMAGESAFETY_TEST_POSTGRES_URL"]
        return
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        initdb = None
    if not initdb or not pg_ctl:
        yield None
        return
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = tempfile.mkdtemp(prefix="imagesafety-pg-")
    data = os.path.join(root, "data")
    if as_user:
        shutil.chown(root, "postgres")
    port = free_port()
    subprocess.run(
        [*as_user, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True
    )
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            data,
            "-l",
            os.path.join(root, "log"),
            "-w",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
