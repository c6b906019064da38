"""
Elements by C{id} in a document tree that changes only by recorded steps.

Most writes name their target by id (C{#item-42}), and XPath finds it only by
testing every element of the document. An L{IdIndex} is built once per tree (one
pass) and then kept up to date by the steps of L{rustybeam.versions} as they remove
and insert subtrees, so finding an element by id costs what the change costs, not
what the document does.
"""

from __future__ import annotations

from lxml import etree


class IdIndex:
    """Where each C{id} is in one tree."""

    def __init__(self, root: etree._Element) -> None:
        self._root = root
        self._at: dict[str, list[etree._Element]] = {}
        self.added(root)

    def find(self, name: str) -> list[etree._Element] | None:
        """
        The elements whose C{id} is C{name}: none, or the only one; C{None} when
        several elements share it (their document order is XPath's to tell) or when
        the index found itself out of date.
        """
        found = self._at.get(name)
        if not found:
            return []
        if len(found) > 1:
            return None
        element = found[0]
        if element.get("id") != name or not self._holds(element):
            return None
        return [element]

    def _holds(self, element: etree._Element) -> bool:
        top = element
        for top in element.iterancestors():
            pass
        return top is self._root

    def added(self, node: etree._Element | str) -> None:
        """Record the ids of C{node} and its descendants, just inserted."""
        if isinstance(node, str):
            return
        for element in node.iter(etree.Element):
            name = element.get("id")
            if name is not None:
                self._at.setdefault(name, []).append(element)

    def removed(self, node: etree._Element | str) -> None:
        """Forget the ids of C{node} and its descendants, about to be removed."""
        if isinstance(node, str):
            return
        for element in node.iter(etree.Element):
            name = element.get("id")
            if name is None:
                continue
            found = self._at.get(name)
            if found is None:
                continue
            for position, candidate in enumerate(found):
                if candidate is element:
                    del found[position]
                    break
            if not found:
                del self._at[name]
