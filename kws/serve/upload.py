"""The /api/label handler: an uploaded recording, received into a temporary file within the
size and time limits, labelled in the uploads' own thread pool (whose work steps aside for
listeners), its work stopped when the client goes away."""

import asyncio
import os
import tempfile
import threading

from aiohttp import web

from kws.audio import AudioError, AudioTooLong
from kws.common import UserError
from kws.serve.protocol import query_settings
from kws.serve.recording import UploadCancelled, label_recording
from kws.serve.state import APP_KEY, release

CHUNK = 1 << 16


class BodyRefused(Exception):
    """The upload's body was not received; .response says why."""

    def __init__(self, response):
        super().__init__(response.text)
        self.response = response


def refuse(status, message):
    return web.json_response({"error": message}, status=status)


def upload_too_large(limit):
    return refuse(413, f"upload over the {limit / 2**20:g} MB limit (serve.py --max_upload_mb)")


def upload_refusal(app, client):
    """The response that refuses one more upload from client (503, 429), or None."""
    config = app.config
    if sum(app.uploads.values()) >= config.max_uploads:
        return refuse(503, f"busy: {config.max_uploads} recordings are being labelled; "
                           "try again shortly")
    if app.uploads[client] >= config.max_uploads_per_client:
        return refuse(429, f"your address has {app.uploads[client]} recording(s) being "
                           f"labelled already (at most {config.max_uploads_per_client})")
    return None


async def label(request):
    app = request.app[APP_KEY]
    try:
        changes = query_settings(request.query, app.config.settings)
    except UserError as e:
        return refuse(400, f"bad settings: {e}")
    client = request.remote
    refusal = upload_refusal(app, client)
    if refusal is not None:
        return refusal
    app.uploads[client] += 1
    try:
        return await receive_and_label(app, request, changes)
    finally:
        release(app.uploads, client)


async def receive_and_label(app, request, changes):
    limit = app.config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        return upload_too_large(limit)
    fd, path = tempfile.mkstemp(prefix="kws_upload_", suffix=".audio")
    try:
        with os.fdopen(fd, "wb") as f:
            size = await receive_body(app, request, f)
        if size == 0:
            return refuse(400, "empty upload")
        return await label_upload(app, request, path, changes)
    except BodyRefused as e:
        return e.response
    finally:
        if os.path.exists(path):
            os.unlink(path)


async def receive_body(app, request, f):
    """Bytes of the request body written to f, or BodyRefused (too large, too slow, gone)."""
    config = app.config
    size = 0
    try:
        async with asyncio.timeout(config.body_timeout):
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > config.max_upload_bytes:
                    raise BodyRefused(upload_too_large(config.max_upload_bytes))
                f.write(chunk)
    except TimeoutError:
        response = refuse(408, f"the upload did not arrive within "
                               f"{config.body_timeout:g} s (serve.py --body_timeout)")
        response.force_close()
        raise BodyRefused(response) from None
    except ConnectionError:
        raise BodyRefused(refuse(400, "the client went away")) from None
    return size


async def label_upload(app, request, path, changes):
    """The labels of the received file as the response, or why it could not be labelled."""
    try:
        result = await label_in_upload_pool(app, request, path, changes)
    except UploadCancelled:
        return refuse(400, "cancelled: the client went away")
    except AudioTooLong as e:
        return refuse(413, str(e).replace(path, "the upload") + " (serve.py --max_upload_seconds)")
    except (AudioError, UserError) as e:
        return refuse(400, str(e).replace(path, "the upload"))
    return web.json_response(result)


async def label_in_upload_pool(app, request, path, changes):
    """Label the file in the uploads' pool; stop its work when the client disconnects."""
    cancelled = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(
        app.upload_pool, label_job, app, path, changes, cancelled)
    try:
        while True:
            done, _ = await asyncio.wait([future], timeout=0.2)
            if done:
                return future.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                cancelled.set()
    finally:
        cancelled.set()  # a cancelled handler (shutdown) stops the work too


def label_job(app, path, changes, cancelled):
    """The upload pool's work: label the file, waiting for listeners between slices."""
    with app.upload_jobs_lock:
        app.upload_jobs += 1
    try:
        spotter = app.new_spotter(changes)
        return label_recording(spotter, path, app.config.max_upload_seconds,
                               lambda: app.priority.wait_for_listeners(cancelled))
    finally:
        with app.upload_jobs_lock:
            app.upload_jobs -= 1
