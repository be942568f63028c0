"""Concurrency and fork behaviour of the CPU kernels (DESIGN.md section 3), each in a fresh
interpreter so that the thread pool starts exactly as a user's would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

THREADS = """
import json, threading, numpy as np, fastconv as fc
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
want = fc.conv2d(x, w, padding=1)
results, errors = [], []
def work():
    try:
        for _ in range(5):
            results.append(fc.conv2d(x, w, padding=1))
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"n": len(results), "same": all(np.array_equal(r, want) for r in results), "errors": errors}))
"""

FORK = """
import json, multiprocessing as mp, numba, numpy as np, fastconv as fc
x = np.ones((1, 2, 6, 6), np.float32); w = np.ones((3, 2, 3, 3), np.float32)
def child(q):
    try:
        q.put(("ok", float(fc.conv2d(x, w, padding=1).sum())))
    except RuntimeError as e:
        q.put(("error", str(e)))
def run_child():
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start(); p.join(60)
    return q.get(timeout=5) if p.exitcode == 0 else ("died", p.exitcode)
before = run_child()            # forked before the parent ran any kernel
parent = float(fc.conv2d(x, w, padding=1).sum())
after = run_child()             # forked after
print(json.dumps({"before": before, "parent": parent, "after": after, "layer": numba.threading_layer()}))
"""

LOCKED_FORK = """
import json, multiprocessing as mp, threading, numpy as np, fastconv as fc
from fastconv.backends.cpu import threads
x = np.ones((1, 2, 6, 6), np.float32); w = np.ones((3, 2, 3, 3), np.float32)
held, release = threading.Event(), threading.Event()
def holder():  # another thread inside a CPU op (here: holding its lock) while the main one forks
    with threads._lock:
        held.set(); release.wait()
threading.Thread(target=holder).start(); held.wait()
def child(q):
    q.put(float(fc.conv2d(x, w, padding=1).sum()))
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start(); p.join(30)
if p.exitcode is None:  # blocked: end it, or the interpreter waits for it at exit
    p.kill(); p.join()
release.set()
print(json.dumps({"exitcode": p.exitcode, "sum": q.get(timeout=5) if p.exitcode == 0 else None}))
"""


def _run(script):
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_concurrent_python_threads_get_correct_results():
    res = _run(THREADS)
    assert res == {"n": 30, "same": True, "errors": []}


@pytest.mark.skipif(sys.platform != "linux", reason="fork() start method is Linux's default")
def test_forked_child_runs_or_gets_a_clear_error():
    res = _run(FORK)
    assert res["before"] == ["ok", res["parent"]]
    if res["layer"] == "omp":  # GNU OpenMP: refused with advice, never killed
        assert res["after"][0] == "error" and "spawn" in res["after"][1]
    else:
        assert res["after"] == ["ok", res["parent"]]


@pytest.mark.skipif(sys.platform != "linux", reason="fork() start method is Linux's default")
def test_fork_while_another_thread_holds_the_lock():
    """A child forked while another thread of the parent is inside an op gets a fresh lock:
    it runs (the copied lock, held by a thread the child does not have, would block forever)."""
    res = _run(LOCKED_FORK)
    # 3 outputs of 6 x 6 cells, each summing 2 channels of ones over its taps inside the input:
    # 16 inner cells 9 taps, 16 edge cells 6, 4 corners 4
    assert res == {"exitcode": 0, "sum": 3 * 2 * (16 * 9 + 16 * 6 + 4 * 4)}
