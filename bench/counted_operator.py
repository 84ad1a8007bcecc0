"""`turnout-operator` with its reconciles counted, for bench/operator.py.

Why it exists: the operator reads its ModelDeployments from kopf's index, so no API request marks
a reconcile any more, and its metrics count rollouts, not reconciles. This wrapper counts the
calls of `Reconciler.reconcile` and writes the count to the file named by
TURNOUT_BENCH_RECONCILES every 0.5 s; everything else is `turnout-operator` as shipped.
It must never change what the operator does.

    python -P bench/counted_operator.py run --namespace default   # -P: bench/operator.py is
                                                                 # not the stdlib's `operator`
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from turnout_operator import reconcile
from turnout_operator.cli import main

COUNT = Path(os.environ["TURNOUT_BENCH_RECONCILES"])
_reconcile = reconcile.Reconciler.reconcile
_lock = threading.Lock()  # reconciles run in a pool of threads
_calls = [0]


def counted(self: reconcile.Reconciler, *args: Any, **kwargs: Any) -> Any:
    with _lock:
        _calls[0] += 1
    return _reconcile(self, *args, **kwargs)


def write_count() -> None:
    staged = COUNT.with_suffix(".new")
    while True:
        staged.write_text(str(_calls[0]))
        staged.replace(COUNT)  # a reader never sees the file half written
        time.sleep(0.5)


if __name__ == "__main__":
    reconcile.Reconciler.reconcile = counted  # type: ignore[method-assign]
    threading.Thread(target=write_count, daemon=True, name="reconcile count").start()
    sys.exit(main(sys.argv[1:]))
