"""The one exception every long-running part of PropDreamer raises when asked to stop (torch-free, so
the server can catch it without importing the pipeline)."""


class Cancelled(Exception):
    """A stage noticed its cancel check and stopped."""
