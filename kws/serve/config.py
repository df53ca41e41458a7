"""The server's settings: the model, the defaults of every new stream, and the limits."""

import dataclasses

# the limits /api/info reports (max_upload_bytes is reported on its own, too)
LIMITS = ("max_upload_seconds", "max_upload_bytes", "max_uploads", "max_uploads_per_client",
          "max_listeners", "max_listeners_per_client", "idle_seconds", "header_timeout",
          "body_timeout")


@dataclasses.dataclass
class ServerConfig:
    model: str
    labels: str | None
    settings: object   # kws.streaming.StreamSettings: the defaults of every new stream
    threads: int = 1
    max_upload_bytes: int = 50 * 2**20
    max_upload_seconds: float = 300.0
    max_uploads: int = 2
    max_uploads_per_client: int = 1
    max_listeners: int = 32
    max_listeners_per_client: int = 4
    idle_seconds: float = 20.0
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    host: str = "127.0.0.1"   # the address bound: its name is an allowed Host
    allow_origins: tuple = ()
    allow_hosts: tuple = ()
