"""The connection timeout that aiohttp lacks: a connection must finish its request headers
within `header_timeout`, and is closed after as long idle between requests."""

import asyncio


class ConnectionGuard:
    """Closes connections that hold no request in progress for `timeout` seconds: a request
    whose headers never finish (slow loris), or an idle keep-alive connection. The app's
    middleware calls busy()/idle() around every request."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.state = {}   # protocol -> [requests in progress, timer]

    def protocol_factory(self, make_protocol):
        def factory():
            protocol = make_protocol()
            self.state[protocol] = [0, None]
            self._arm(protocol)
            return protocol
        return factory

    def _arm(self, protocol):
        entry = self.state[protocol]
        loop = asyncio.get_running_loop()
        entry[1] = loop.call_later(self.timeout, self._expire, protocol)

    def _expire(self, protocol):
        entry = self.state.get(protocol)
        if entry is None or entry[0]:
            return
        del self.state[protocol]
        transport = protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def busy(self, protocol):
        entry = self.state.get(protocol)
        if entry is not None:
            entry[0] += 1
            if entry[1] is not None:
                entry[1].cancel()
                entry[1] = None

    def idle(self, protocol):
        entry = self.state.get(protocol)
        if entry is None:
            return
        entry[0] -= 1
        if not entry[0]:
            transport = protocol.transport
            if transport is None or transport.is_closing():
                del self.state[protocol]
            else:
                self._arm(protocol)
