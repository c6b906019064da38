"""
The change log: where the document store hands every change it applied.

A store reports the L{Change}s of each commit, together, to one sink. In a single process that sink is the
L{InProcessChangeLog}, which passes the change straight to the notifier (today's
behaviour). In a cluster the writer's sink is a L{rustybeam.redislog.RedisChangeLog},
which also appends the change to a Redis stream that every edge follows. Nothing
above the store knows which one it has: this module is the seam.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

from twisted.internet.interfaces import IReactorThreads

from rustybeam.changes import Change
from rustybeam.documents import DocumentStore, StoreOptions
from rustybeam.notifier import DocumentChangeNotifier


class ChangeLog(Protocol):
    """Receives every applied change, in the order the store applied them: the
    changes of one commit (one document's) together."""

    def extend(self, changes: Sequence[Change]) -> None: ...


class InProcessChangeLog:
    """The change log of a lone process: every change goes to the local notifier."""

    def __init__(self, notifier: DocumentChangeNotifier) -> None:
        self.notifier = notifier

    def extend(self, changes: Sequence[Change]) -> None:
        self.notifier.changedAll(changes)


StoreFactory = Callable[[str, DocumentChangeNotifier, StoreOptions, IReactorThreads],
                        DocumentStore]
"""Builds a document service's store: its root, the notifier its changes reach,
its options and its reactor."""


class StoreProvider(Protocol):
    """Gives each host its store (a cluster node's kind), and hears when one is done."""

    def storeFor(self, host: str) -> StoreFactory: ...

    def release(self, host: str, store: DocumentStore) -> None:
        """C{host}'s C{store} no longer serves: a reload removed the host or gave it
        another root, and its service has stopped."""


def inProcessStore(root: str, notifier: DocumentChangeNotifier, options: StoreOptions,
                   reactor: IReactorThreads) -> DocumentStore:
    """The store of a single process: documents on disk, changes to the notifier."""
    return DocumentStore(root, InProcessChangeLog(notifier).extend, options, reactor)
