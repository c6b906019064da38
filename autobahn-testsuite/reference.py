"""
The reference testee: bare Autobahn|Python echo behind C{WebSocketResource} on a
Twisted Web C{Site}, permessage-deflate accepted, Autobahn's defaults otherwise.
C{autobahn-testsuite/run --with-reference} runs the suite against it beside rustybeam's
testee, so that their results and case times are compared in one run.

    python autobahn-testsuite/reference.py PORT
"""

from __future__ import annotations

import sys

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


def accept(offers: list[object]) -> PerMessageDeflateOfferAccept | None:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def main(port: int) -> None:
    factory = WebSocketServerFactory()
    factory.protocol = Echo
    factory.setProtocolOptions(perMessageCompressionAccept=accept)
    root = Resource()
    root.putChild(b"", WebSocketResource(factory))
    reactor.listenTCP(port, Site(root), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
