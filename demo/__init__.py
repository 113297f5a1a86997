"""The demo: a full encrypted scoring round trip on local defaults (``make demo``)."""
