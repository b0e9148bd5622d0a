"""Fault injection for the dask fits' tests: a worker in a process of its own, SIGKILLed while
a model fits (the lost-worker cases of issue 20)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time


def worker_process(client, address: str, preload: str) -> subprocess.Popen:
    """A second worker in a process of its own (no nanny: killed, it stays dead), importing
    ``preload`` at start."""
    proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                             "--no-nanny", "--nthreads", "1", "--no-dashboard", "--preload",
                             preload], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client.wait_for_workers(2, timeout=120)
    return proc


def fit_while_killing(client, proc: subprocess.Popen, ddf, delay: float, model):
    """``model.fit(ddf, client=client)``, SIGKILLing ``proc`` ``delay`` s in; checks that the
    kill fell inside the fit."""
    killed: dict[str, float] = {}

    def kill():
        killed["at"] = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)

    timer = threading.Timer(delay, kill)
    start = time.monotonic()
    timer.start()
    try:
        model.fit(ddf, client=client)
    finally:
        end = time.monotonic()
        timer.join()
        proc.wait(30)
        assert start < killed["at"] < end, "the worker was not killed during the fit"
    return model
