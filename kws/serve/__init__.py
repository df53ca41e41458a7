"""The live page's server (serve.py is its command line): the stream protocol, the upload
endpoint, and the limits that keep one client from taking the server from the others.

    server = await start_server(ServerConfig(model=..., labels=None, settings=...), host, port)
    ...                                   # server.url, server.app; then await server.close()

Work is bounded per client and in all: a listener closes after `idle_seconds` without audio,
an address may hold `max_listeners_per_client` streams and `max_uploads_per_client` uploads,
an upload may hold `max_upload_seconds` of audio (from its header, then counted while it
decodes), and a connection must finish its request headers within `header_timeout` and its
upload body within `body_timeout`. Uploads run in their own threads and step aside whenever a
listener's frame is waiting (ListenersFirst), so they delay a live result by one slice of
their work (milliseconds), and a client that disconnects stops its upload's work.
Requests to /ws and /api/* from another site (Origin) or under another host name (Host: DNS
rebinding) are refused; every response carries a content security policy.

One idea a module:
  config.py     ServerConfig: the model, the stream defaults and every limit (serve.py's flags)
  protocol.py   the stream protocol, no web framework: audio frames, settings messages, results
  recording.py  labelling an uploaded file block by block: detections, CSV, waveform envelope
  hosts.py      who may ask: loopback, the Host (DNS rebinding) and Origin (other sites) checks
  guard.py      ConnectionGuard: closes connections that hold no request (slow loris, idle)
  state.py      App: the model factory, the thread pools, who holds what; ListenersFirst
  security.py   the middleware (Host/Origin refusals, the guard) and the security headers
  listen.py     the /ws handler: one microphone stream
  upload.py     the /api/label handler: receive a recording, label it in the uploads' pool
  server.py     make_app (routes) and start_server (bind with the connection guard)
"""
