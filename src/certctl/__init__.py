"""certctl: the whole TLS certificate lifecycle, self-hosted."""

__version__ = "0.1.0"
