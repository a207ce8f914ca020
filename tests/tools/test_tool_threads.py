"""Reused tool threads: bounded waits, reuse, overrunning calls left to finish."""

from __future__ import annotations

import threading

from tools.tool_threads import ToolThreads


def test_tool_threads_run_and_reuse_one_thread_for_sequential_calls() -> None:
    threads = ToolThreads(max_idle=2)
    seen: list[int] = []
    for _ in range(5):
        assert threads.run(lambda: seen.append(threading.get_ident()), timeout=5)
    assert len(seen) == 5
    assert len(set(seen)) == 1  # the same thread each time


def test_tool_threads_overrun_is_not_waited_for_and_others_still_run() -> None:
    threads = ToolThreads(max_idle=2)
    release = threading.Event()
    assert not threads.run(release.wait, timeout=0.05)  # overran: the caller moves on
    ran = threading.Event()
    assert threads.run(ran.set, timeout=5)  # another thread serves meanwhile
    assert ran.is_set()
    assert not threads.wait_idle(0.05)  # the overrunning call is still running
    release.set()
    assert threads.wait_idle(5)


def test_tool_threads_keep_at_most_max_idle() -> None:
    threads = ToolThreads(max_idle=1)
    gate = threading.Event()
    started = [threading.Event() for _ in range(3)]
    callers = [
        threading.Thread(target=threads.run, args=(lambda e=e: (e.set(), gate.wait()), 5))
        for e in started
    ]
    for caller in callers:
        caller.start()
    for event in started:
        assert event.wait(5)  # three calls at once: three threads
    gate.set()
    for caller in callers:
        caller.join(5)
    assert threads.wait_idle(5)
    assert len(threads._idle) == 1  # the other two threads ended
