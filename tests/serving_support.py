"""Shared pieces of the serving tests: a planted-pair data set, and a throwaway PostgreSQL
cluster (skipped when the server binaries are absent).

The data: 40 items in 20 pairs (``p3a``/``p3b``); every user holds both items of two
pairs. So an item's nearest neighbour is its partner, and a click on ``p12a`` puts
``p12b`` first in an ItemKNN list: a live event changes the list in a predictable way.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

N_PAIRS = 20
N_USERS = 120


def pair_log(seed: int = 0) -> pd.DataFrame:
    """Events ``user_id, item_id, timestamp``: each user has both items of two pairs."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 0
    for u in range(N_USERS):
        for p in rng.choice(N_PAIRS, size=2, replace=False):
            for side in "ab":
                rows.append((f"u{u}", f"p{p}{side}", t))
                t += 1
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- PostgreSQL
def _pg_bin() -> Path | None:
    """The directory of initdb/pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if d.parent.name.isdigit()]
    dirs = sorted(versions, key=lambda d: int(d.parent.name))
    return dirs[-1] if dirs and (dirs[-1] / "initdb").is_file() else None


def _as_cluster_owner(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a throwaway cluster (unix socket only, no TCP) and yield its URL."""
    pytest.importorskip("psycopg")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to own the test cluster")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start the cluster as 'postgres'")
    # not pytest's tmp_path: its parent is private to root, the cluster's user must enter
    base = Path(tempfile.mkdtemp(prefix="recstack-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        for path in (base, sock):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    pg_ctl = str(bindir / "pg_ctl")
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        run = {"check": True, "capture_output": True, "timeout": 120}
        subprocess.run(_as_cluster_owner([*initdb, "-E", "UTF8", "--no-sync"]), **run)
        options = f"-k {sock} -c listen_addresses='' -p {port}"
        start = [pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60"]
        subprocess.run(_as_cluster_owner([*start, "-o", options, "start"]), **run)
        yield f"postgresql://postgres@/postgres?host={sock}&port={port}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_cluster_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(base, ignore_errors=True)


def reset_postgres(url: str) -> None:
    """Drop the service's tables, so each test starts from an empty store."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS recstack_events, recstack_requests")
