"""The server's state: a model factory, one thread pool for listeners and one for uploads (the
uploads' work steps aside for listeners: ListenersFirst), and who holds what."""

import asyncio
import collections
import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from kws import SAMPLE_RATE
from kws.runtime import load_streaming_model
from kws.serve.config import LIMITS
from kws.serve.guard import ConnectionGuard
from kws.serve.protocol import MAX_FRAME_SAMPLES, PAGE_SETTINGS
from kws.streaming import Spotter


class ListenersFirst:
    """A priority between two thread pools: upload work waits while any listener job is queued
    or running. Listener jobs are counted from the moment they are submitted."""

    def __init__(self):
        self.active = 0
        self.changed = threading.Condition()

    def listener_started(self):
        with self.changed:
            self.active += 1

    def listener_done(self):
        with self.changed:
            self.active -= 1
            if not self.active:
                self.changed.notify_all()

    def wait_for_listeners(self, cancelled):
        """Block until no listener job is waiting; False if `cancelled` was set meanwhile."""
        with self.changed:
            while self.active and not cancelled.is_set():
                self.changed.wait(0.1)
        return not cancelled.is_set()


class App:
    """The server's state: a model factory, one thread pool for listeners and one for uploads,
    and who holds what."""

    def __init__(self, config):
        self.config = config
        model, self.labels = self.load_model()  # fail at start, not at the first listener
        del model
        self.pool = ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1),
                                       thread_name_prefix="kws-listen")
        self.upload_pool = ThreadPoolExecutor(max_workers=config.max_uploads,
                                              thread_name_prefix="kws-upload")
        self.priority = ListenersFirst()
        self.guard = ConnectionGuard(config.header_timeout)
        self.listeners = collections.Counter()  # client address -> open streams
        self.uploads = collections.Counter()    # client address -> uploads in progress
        self.upload_jobs = 0                    # upload work running in upload_pool now
        self.upload_jobs_lock = threading.Lock()

    def load_model(self):
        c = self.config
        return load_streaming_model(c.model, c.labels, c.threads, c.settings.stride_ms)

    def new_spotter(self, changes=None):
        model, labels = self.load_model()
        return Spotter(model, labels, dataclasses.replace(self.config.settings, **(changes or {})))

    async def run_listener_job(self, fn, *args):
        """fn(*args) in the listeners' pool, counted so that uploads wait for it."""
        def job():
            try:
                return fn(*args)
            finally:
                self.priority.listener_done()

        self.priority.listener_started()
        try:
            future = asyncio.get_running_loop().run_in_executor(self.pool, job)
        except BaseException:
            self.priority.listener_done()
            raise
        return await future

    def info(self):
        c = self.config
        return {"model": os.path.basename(c.model), "labels": self.labels,
                "settings": dataclasses.asdict(c.settings),
                "page_settings": list(PAGE_SETTINGS),
                "max_upload_bytes": c.max_upload_bytes,
                "limits": {name: getattr(c, name) for name in LIMITS},
                "sample_rate": SAMPLE_RATE, "max_frame_samples": MAX_FRAME_SAMPLES}

    def shut_down(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.upload_pool.shutdown(wait=False, cancel_futures=True)


APP_KEY = web.AppKey("kws_app", App)  # the aiohttp application's App: request.app[APP_KEY]


def release(counter, client):
    """One fewer held by client; an address that holds nothing leaves the counter."""
    counter[client] -= 1
    if not counter[client]:
        del counter[client]
