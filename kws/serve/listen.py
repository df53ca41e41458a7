"""The /ws handler: one microphone stream. Binary frames of audio get a result each; text frames
change the stream's settings; anything else, too many streams, or `idle_seconds` without audio
closes this connection with a code and a reason, and the others go on."""

import asyncio
import dataclasses
import sys

from aiohttp import WSCloseCode, WSMsgType, web

from kws.common import UserError
from kws.serve.protocol import (
    MAX_FRAME_SAMPLES,
    ProtocolError,
    decode_audio_frame,
    feed_frame,
    settings_changes,
)
from kws.serve.state import APP_KEY, release


async def listen(request):
    # No heartbeat: the idle timeout already closes a stream whose client vanished, and
    # aiohttp 3.14 re-arms a closed socket's heartbeat when the client's close frame arrives
    # after the server's, which keeps every such socket (idle ones, refused ones) in memory.
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_SAMPLES * 2 + 1024)
    try:
        await ws.prepare(request)
    except ConnectionError:  # the client left during the handshake
        return web.Response(status=400)
    app = request.app[APP_KEY]
    client = request.remote
    refusal = listener_refusal(app, client)
    if refusal:
        await close_with_error(ws, WSCloseCode.TRY_AGAIN_LATER, refusal)
        return ws
    app.listeners[client] += 1
    try:
        await serve_listener(app, ws)
    finally:
        release(app.listeners, client)
    if ws.close_code == WSCloseCode.MESSAGE_TOO_BIG:
        print("a listener sent a frame over the size limit", file=sys.stderr)
    return ws


def listener_refusal(app, client):
    """Why one more stream from client is refused (the server or the address is full), or None."""
    config = app.config
    if sum(app.listeners.values()) >= config.max_listeners:
        return "server full"
    if app.listeners[client] >= config.max_listeners_per_client:
        return (f"too many listeners from your address (at most "
                f"{config.max_listeners_per_client})")
    return None


async def serve_listener(app, ws):
    """A new recognizer, the ready message, then the stream; an error closes this stream only."""
    try:
        spotter = await app.run_listener_job(app.new_spotter)
        await ws.send_json({"type": "ready", **app.info()})
        await stream_to(app, ws, spotter)
    except (ProtocolError, UserError) as e:
        await close_with_error(ws, WSCloseCode.UNSUPPORTED_DATA, str(e))
    except Exception as e:  # one bad stream must not take the server down
        await close_with_error(ws, WSCloseCode.INTERNAL_ERROR, f"server error: {e}")


async def stream_to(app, ws, spotter):
    """Answer the frames of one listener until it leaves or sends no audio for too long."""
    idle_seconds = app.config.idle_seconds
    loop = asyncio.get_running_loop()
    last_audio = loop.time()
    while True:
        wait = last_audio + idle_seconds - loop.time()
        try:
            msg = await ws.receive(timeout=max(wait, 0.001))  # 0 means none
        except TimeoutError:
            await close_with_error(ws, WSCloseCode.POLICY_VIOLATION,
                                   f"idle: no audio for {idle_seconds:g} s")
            return
        if msg.type == WSMsgType.BINARY:
            last_audio = loop.time()
            await answer_audio(app, ws, spotter, msg.data)
        elif msg.type == WSMsgType.TEXT:
            settings = spotter.update_settings(**settings_changes(msg.data))
            await ws.send_json({"type": "settings", "settings": dataclasses.asdict(settings)})
        else:  # CLOSE, CLOSING, CLOSED, ERROR
            return


async def answer_audio(app, ws, spotter, data):
    """The result of one audio frame, sent back."""
    # counted from receipt to reply: the event loop's part (JSON, framing) needs the CPU and
    # the interpreter as much as the model's part in the pool does
    app.priority.listener_started()
    try:
        samples = decode_audio_frame(data)
        await ws.send_json(await app.run_listener_job(feed_frame, spotter, samples))
    finally:
        app.priority.listener_done()


async def close_with_error(ws, code, message):
    if not ws.closed:
        try:
            await ws.send_json({"type": "error", "message": message})
        except ConnectionError:
            pass
        await ws.close(code=code, message=message[:120].encode())
