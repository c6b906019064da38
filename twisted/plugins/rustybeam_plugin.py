"""The C{twistd rustybeam} plugin."""

from twisted.application.service import ServiceMaker

rustybeam = ServiceMaker(
    "rustybeam",
    "rustybeam.tap",
    "Live HTML documents: selector ranges over HTTP, StreamItems over WebSocket.",
    "rustybeam",
)
