"""The wire protocol, the client and the job request, shared with the server: vendored into `_vendor/`
when the extension is built (packaging/build_extension.py), imported from the installed `propdreamer`
package when the add-on runs from the source tree (tests, development). One implementation, never a
copy to keep in sync."""

try:  # the built extension
    from ._vendor import request
    from ._vendor.client import Client, ServerError
    from ._vendor.wire import ProtocolError
except ImportError:  # the source tree, with `pip install -e .`
    from propdreamer.core import request
    from propdreamer.server.client import Client, ServerError
    from propdreamer.server.wire import ProtocolError

PROTOCOL_MAJOR = "1"

__all__ = ["Client", "ServerError", "ProtocolError", "PROTOCOL_MAJOR", "request"]
