"""The aiohttp application (its routes, middleware and shutdown) and the running server, bound
with the connection guard."""

import asyncio
import dataclasses
import os

from aiohttp import web

from kws.common import UserError
from kws.serve.listen import listen
from kws.serve.security import add_security_headers, checks
from kws.serve.state import APP_KEY, App
from kws.serve.upload import label

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")


async def index(request):
    return web.FileResponse(os.path.join(WEB_DIR, "index.html"))


async def info(request):
    return web.json_response(request.app[APP_KEY].info())


async def on_shutdown(web_app):
    web_app[APP_KEY].shut_down()


def make_app(app):
    """The aiohttp application that serves app (an App): the page, /api/*, /ws and /static/."""
    web_app = web.Application(client_max_size=app.config.max_upload_bytes + 1,
                              middlewares=[checks])
    web_app[APP_KEY] = app
    web_app.router.add_get("/", index)
    web_app.router.add_get("/api/info", info)
    web_app.router.add_post("/api/label", label)
    web_app.router.add_get("/ws", listen)
    web_app.router.add_static("/static/", WEB_DIR, follow_symlinks=False)
    web_app.on_response_prepare.append(add_security_headers)
    web_app.on_shutdown.append(on_shutdown)
    return web_app


@dataclasses.dataclass
class RunningServer:
    url: str
    app: App
    runner: object
    server: asyncio.AbstractServer

    async def close(self):
        self.server.close()
        await self.runner.cleanup()


async def start_server(config, host, port):
    """Serve the app on host:port (0: any free port) with the connection guard; UserError if
    the address cannot be bound."""
    app = App(config)
    runner = web.AppRunner(make_app(app), handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(app.guard.protocol_factory(runner.server), host, port,
                                          reuse_address=True)
    except OSError as e:
        await runner.cleanup()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    bound = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return RunningServer(f"http://{shown}:{bound}/", app, runner, server)


async def serve_forever(config, host, port, ready):
    """Run the server until cancelled; ready(url) is called once it listens."""
    server = await start_server(config, host, port)
    ready(server.url)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await server.close()
