"""What every request passes: the connection guard's bookkeeping, the Host check (DNS
rebinding), the Origin check of /ws and /api/*, and the security headers of every response."""

from aiohttp import web

from kws.serve.hosts import host_refusal, origin_refusal
from kws.serve.state import APP_KEY

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data: blob:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def request_refusal(config, request):
    """Why a request is refused (403), or None."""
    refusal = host_refusal(config, request.headers.get("Host"))
    if refusal is None and (request.path == "/ws" or request.path.startswith("/api/")):
        refusal = origin_refusal(config, request.headers.get("Origin"),
                                 request.headers.get("Host"))
    return refusal


@web.middleware
async def checks(request, handler):
    """Refuse a request from another host name or site; the guard counts it while it runs."""
    app = request.app[APP_KEY]
    app.guard.busy(request.protocol)
    try:
        refusal = request_refusal(app.config, request)
        if refusal:
            return web.json_response({"error": refusal}, status=403)
        return await handler(request)
    finally:
        app.guard.idle(request.protocol)


async def add_security_headers(request, response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
