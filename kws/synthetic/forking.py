"""Run functions in freshly forked child processes, a few at a time, from this thread only."""

import multiprocessing
from multiprocessing.connection import wait


def _child_main(conn, fn, args):
    try:
        result = ("ok", fn(*args))
    except BaseException as e:  # everything, even SystemExit, goes back to the parent
        result = ("error", e)
    try:
        conn.send(result)
    except Exception:  # an exception that does not pickle
        conn.send(("error", RuntimeError(repr(result[1]))))
    conn.close()


def run_forked(tasks, workers, on_done=None):
    """Run each (fn, args) in a newly forked child process, `workers` at a time; return results.

    We fork from this thread only, with no other thread running: multiprocessing.Pool's
    maxtasksperchild forks from a helper thread while others hold locks, and its children
    sometimes hang. A fresh child per task also means a fresh espeak-ng (this process never
    initialises it). A child's exception is raised here.
    """
    ctx = multiprocessing.get_context("fork")
    pending = list(enumerate(tasks))[::-1]
    running = {}  # parent end of a pipe -> (task index, process)
    results = [None] * len(tasks)
    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                index, (fn, args) = pending.pop()
                parent_end, child_end = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_child_main, args=(child_end, fn, args), daemon=True)
                process.start()
                child_end.close()
                running[parent_end] = (index, process)
            for conn in wait(list(running)):
                index, process = running.pop(conn)
                try:
                    status, value = conn.recv()
                except EOFError:
                    status, value = "error", RuntimeError(
                        f"a worker process died (exit code {process.exitcode})")
                conn.close()
                process.join()
                if status == "error":
                    raise value
                results[index] = value
                if on_done:
                    on_done(index, value)
    finally:
        for conn, (_, process) in running.items():
            process.terminate()
            process.join()
            conn.close()
    return results


def run_in_child(fn, *args):
    """fn(*args) in a forked child: espeak-ng state never leaks into this process."""
    return run_forked([(fn, args)], 1)[0]
