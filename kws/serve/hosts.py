"""Who may ask: the loopback addresses, and why a Host or an Origin header is refused (DNS
rebinding; a page of another site). No web framework: serve.py checks --host with it."""

import ipaddress

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(netloc):
    """The host of a Host header or an origin's host[:port], lower case, without brackets."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc[1:]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def is_ip_literal(name):
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_refusal(config, host_header):
    """Why a Host header is refused, or None. Allowed: the loopback names, the bound address,
    --allow_host names and, when bound to every interface, any IP address; a DNS name that
    points here without being listed is DNS rebinding. No Host at all (HTTP/1.0) is no browser."""
    if host_header is None:
        return None
    name = host_name(host_header)
    bound = config.host.strip("[]").lower()
    allowed = {*LOOPBACK_NAMES, *(h.lower() for h in config.allow_hosts)}
    if bound not in ("", "0.0.0.0", "::"):
        allowed.add(bound)
    elif is_ip_literal(name):
        return None
    if name in allowed:
        return None
    return f"host {name!r} is not served here (serve.py --allow_host adds a name)"


def origin_refusal(config, origin, host_header):
    """Why an Origin header is refused, or None: same origin (the Host the browser asked for)
    or an --allow_origin. No Origin at all is a client that is not a browser page."""
    if origin is None:
        return None
    origin = origin.strip().lower().rstrip("/")
    if origin in (o.lower().rstrip("/") for o in config.allow_origins):
        return None
    scheme, _, netloc = origin.partition("://")
    if scheme in ("http", "https") and netloc and netloc == (host_header or "").lower():
        return None
    return (f"requests from the page of another site ({origin}) are refused "
            "(serve.py --allow_origin adds one)")
