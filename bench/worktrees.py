"""Another revision of this repository beside this one, for benchmarks that compare the two.

`worktree` checks the revision out as a git worktree under a scratch folder and removes it
afterwards; `run_on` runs a benchmark script's child on a tree (its own or the other), in a fresh
process with one BLAS thread, importing the product from that tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The last commit before issue 19: what "today's code" meant when that issue was filed.
BEFORE_ISSUE_19 = "0da0a8e"


@contextmanager
def worktree(revision: str, scratch: Path) -> Iterator[Path]:
    """`revision` checked out at `scratch / "before"` for the duration."""
    tree = scratch / "before"
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run(
        [*git, "add", "--detach", "-f", str(tree), revision], check=True, capture_output=True
    )
    try:
        yield tree
    finally:
        subprocess.run([*git, "remove", "--force", str(tree)], check=False, capture_output=True)


def run_on(tree: Path, script: Path, job: Path) -> subprocess.CompletedProcess[str]:
    """`script --child job` on `tree`'s code, one BLAS thread; raises on failure."""
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(tree),
    }
    child = subprocess.run(
        [sys.executable, str(script), "--child", str(job)],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        raise SystemExit(f"{script.name} on {tree} failed:\n{child.stderr}")
    return child
