"""
Versions of a document tree that is edited in place, one change at a time.

A document is served by two trees: the I{committed} one, which readers use and which
is never modified while it is committed, and a I{working} one that the next write
edits in a worker thread. When the write is on disk the two swap roles, and the edit
is replayed on the former committed tree before the write after it, so that a write
costs what it changes, not a copy of the document.

Every edit is recorded as steps addressed by child-index paths. An earlier version
of the document (the C{before} and C{after} of a change, which a selector watcher, a
redacting viewer or a resuming client may ask for) is rebuilt only when asked: a
copy of the committed tree with the newer edits undone.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Callable, Iterator

from lxml import etree

from rustybeam import markup
from rustybeam.ids import IdIndex
from rustybeam.markup import Node

Path = tuple[int, ...]


def pathOf(element: etree._Element) -> Path:
    """The child indexes that lead from the root element to C{element}."""
    path: list[int] = []
    parent = element.getparent()
    while parent is not None:
        path.append(parent.index(element))
        element = parent
        parent = element.getparent()
    return tuple(reversed(path))


def follow(tree: etree._ElementTree, path: Path) -> etree._Element:
    element = tree.getroot()
    for index in path:
        element = element[index]
    return element


@dataclass
class Step:
    """
    One elementary edit: C{kind} is C{replace} (the element at C{path} by C{nodes}),
    C{append} (C{nodes} as last children of the element at C{path}) or C{remove}
    (the element at C{path}; the root loses its children and text instead).

    C{path} is taken just before the step; C{removed}, C{text} and C{tail} (the
    parent's text and the tail of the node before the insertion point, before the
    step) are what undoing it needs, C{nodes} untouched copies of what redoing it
    inserts.
    """

    kind: str
    path: Path
    nodes: list[Node] | None
    inserted: int
    removed: list[etree._Element]
    text: str | None
    tail: str | None
    index: int
    anchor: str | None = None
    """The C{id} of the element at C{path} when the step was taken: with the index of a
    tree in the same state, it finds that element without walking to it."""

    def undo(self, tree: etree._ElementTree, ids: IdIndex | None = None) -> None:
        """Turn C{tree} from the state after this step back into the one before it
        (and C{ids}, the index of C{tree}, with it)."""
        if self.kind == "remove" and not self.path:
            root = tree.getroot()
            root.text = self.text
            for child in self.removed:
                copy = deepcopy(child)
                root.append(copy)
                _record(ids, [copy])
            return
        parent = follow(tree, self.path if self.kind == "append" else self.path[:-1])
        index = self.index
        for _ in range(self.inserted):
            _forget(ids, [parent[index]])
            del parent[index]
        parent.text = self.text
        if index > 0:
            parent[index - 1].tail = self.tail
        for offset, element in enumerate(self.removed):
            copy = deepcopy(element)
            parent.insert(index + offset, copy)
            _record(ids, [copy])

    def redo(self, tree: etree._ElementTree, ids: IdIndex | None = None) -> None:
        """Apply this step to C{tree}, which is in the state before it (once only:
        the recorded nodes move into C{tree}), and to C{ids}, the index of C{tree}."""
        nodes = self.nodes or []
        self.nodes = None
        target = self._target(tree, ids)
        if self.kind == "append":
            markup.appendNodes(target, nodes)
        elif self.kind == "replace":
            _forget(ids, [target])
            markup.replaceWith(target, nodes)
        else:
            _forget(ids, list(target) if target.getparent() is None else [target])
            markup.detach(target)
        _record(ids, nodes)

    def _target(self, tree: etree._ElementTree, ids: IdIndex | None) -> etree._Element:
        """The element at C{path}: by its id when C{ids} holds exactly one element with
        it (then it is that one, as the tree is in the state the step was taken in)."""
        if ids is not None and self.anchor is not None:
            found = ids.find(self.anchor)
            if found:
                return found[0]
        return follow(tree, self.path)


def _forget(ids: IdIndex | None, removed: list[etree._Element]) -> None:
    if ids is not None:
        for node in removed:
            ids.removed(node)


def _record(ids: IdIndex | None, inserted: list[Node]) -> None:
    if ids is not None:
        for node in inserted:
            ids.added(node)


def _pristine(nodes: list[Node]) -> list[Node]:
    return [n if isinstance(n, str) else deepcopy(n) for n in nodes]


def _textState(parent: etree._Element, previous: etree._Element | None
               ) -> tuple[str | None, str | None]:
    """What undoing a step restores around it: the parent's text and the tail of the
    node before the step's place (found as C{previous}, not by counting)."""
    return parent.text, (previous.tail if previous is not None else None)


def replace(target: etree._Element, nodes: list[Node], ids: IdIndex | None = None) -> Step:
    """Replace C{target} (not the root) with C{nodes}; the step that did it. C{ids},
    the index of the tree, follows."""
    parent = target.getparent()
    index = parent.index(target)
    text, tail = _textState(parent, target.getprevious())
    step = Step("replace", pathOf(parent) + (index,), _pristine(nodes),
                sum(1 for n in nodes if not isinstance(n, str)), [target], text, tail, index,
                target.get("id"))
    _forget(ids, [target])
    markup.replaceWith(target, nodes)
    _record(ids, nodes)
    return step


def append(container: etree._Element, nodes: list[Node], ids: IdIndex | None = None) -> Step:
    """Append C{nodes} to C{container}; the step that did it (C{ids} follows)."""
    index = len(container)
    text, tail = _textState(container, markup.lastChild(container))
    step = Step("append", pathOf(container), _pristine(nodes),
                sum(1 for n in nodes if not isinstance(n, str)), [], text, tail, index,
                container.get("id"))
    markup.appendNodes(container, nodes)
    _record(ids, nodes)
    return step


def remove(target: etree._Element, ids: IdIndex | None = None) -> Step:
    """Remove C{target} (the root keeps only itself); the step that did it (C{ids}
    follows)."""
    parent = target.getparent()
    if parent is None:
        step = Step("remove", (), None, 0, list(target), target.text, None, 0)
    else:
        index = parent.index(target)
        text, tail = _textState(parent, target.getprevious())
        step = Step("remove", pathOf(parent) + (index,), None, 0, [target], text, tail, index,
                    target.get("id"))
    _forget(ids, step.removed)
    markup.detach(target)
    return step


@dataclass(eq=False)
class Edit:
    """The steps of one write, and where its changed elements are in the versions
    before (C{removed}) and after it (C{inserted}, C{containers})."""

    steps: list[Step] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    inserted: list[Path] = field(default_factory=list)
    containers: list[Path] = field(default_factory=list)
    lineage: Lineage | None = None
    version: int = 0
    """The number of edits of its lineage up to and including this one."""
    newer: Edit | None = None
    """The edit that followed this one on the same lineage, once it is committed."""

    def undo(self, tree: etree._ElementTree, ids: IdIndex | None = None) -> None:
        for step in reversed(self.steps):
            step.undo(tree, ids)

    def redo(self, tree: etree._ElementTree, ids: IdIndex | None = None) -> None:
        for step in self.steps:
            step.redo(tree, ids)

    def _newer(self) -> Iterator[Edit]:
        edit = self.newer
        while edit is not None:
            yield edit
            edit = edit.newer

    def treeAfter(self) -> etree._ElementTree:
        """The document as this edit left it, as a tree of its own."""
        assert self.lineage is not None
        return self.lineage.rebuild(self.version, lambda: list(self._newer()))

    def treeBefore(self) -> etree._ElementTree:
        """The document as it was before this edit, as a tree of its own."""
        assert self.lineage is not None
        return self.lineage.rebuild(self.version - 1, lambda: [self, *self._newer()])


class Lineage:
    """
    One parsed document and the edits made to it since it was parsed: the committed
    tree, a working copy for the next write, and the newest committed edit.
    """

    def __init__(self, tree: etree._ElementTree) -> None:
        self.committed = tree
        self.verified = False
        """Whether the committed tree is known to serialize into markup that parses
        back into the same structure (then a write needs only check what it adds)."""
        self.latest = Edit(lineage=self)
        """The newest committed edit; at first an empty one standing for the parsed
        document. Older edits are kept alive only by the changes that need them."""
        self._working: etree._ElementTree | None = None
        self._pending: list[Edit] = []
        self._built: dict[int, etree._ElementTree] = {}
        self._ids: list[tuple[etree._ElementTree, IdIndex]] = []

    def working(self) -> etree._ElementTree:
        """The tree a write may edit (in the write's turn only), in the committed state."""
        if self._working is None:
            self._working = markup.copyTree(self.committed)
        else:
            ids = self.indexOf(self._working)
            for edit in self._pending:
                edit.redo(self._working, ids)
        self._pending = []
        return self._working

    def ids(self, tree: etree._ElementTree) -> IdIndex:
        """The id index of C{tree}, the working or the committed tree, built on first
        use; every step applied to C{tree} must be given it."""
        index = self.indexOf(tree)
        if index is None:
            index = IdIndex(tree.getroot())
            self._ids = [(t, i) for t, i in self._ids
                         if t is self.committed or t is self._working] + [(tree, index)]
        return index

    def indexOf(self, tree: etree._ElementTree) -> IdIndex | None:
        """The id index of C{tree} if one was built (then every step applied to
        C{tree} must be given it), else C{None}."""
        for indexed, index in self._ids:
            if indexed is tree:
                return index
        return None

    def discardWorking(self) -> None:
        """Forget the working tree after a failed write (it is copied anew next time)."""
        self._ids = [(t, i) for t, i in self._ids if t is not self._working]
        self._working = None
        self._pending = []

    def commit(self, edit: Edit, tree: etree._ElementTree) -> None:
        """Make C{tree}, the working tree as C{edit} left it, the committed one."""
        self.commitAll([edit], tree)

    def commitAll(self, edits: list[Edit], tree: etree._ElementTree) -> None:
        """Make C{tree}, the working tree as C{edits} (in order) left it, the
        committed one; the former committed tree becomes the working one, to be
        brought up to date by redoing them before the next write."""
        for edit in edits:
            edit.lineage = self
            edit.version = self.latest.version + 1
            self.latest.newer = edit
            self.latest = edit
        previous, self.committed = self.committed, tree
        self._working, self._pending = previous, list(edits)
        self.verified = True

    def release(self) -> None:
        """Drop the working tree (the store no longer caches this document)."""
        self._ids = []
        self._working = None
        self._pending = []

    def rebuild(self, version: int, newer: Callable[[], list[Edit]]) -> etree._ElementTree:
        """
        The document at C{version}, as a tree of its own: the committed tree with
        C{newer()} (the edits after that version, oldest first) undone. The last two
        trees built are kept, so that one change's C{after} is the next one's
        C{before} without a second copy (as when each version was a tree).
        """
        built = self._built.get(version)
        if built is not None:
            return built
        tree = markup.copyTree(self.committed)
        for edit in reversed(newer()):
            edit.undo(tree)
        self._built[version] = tree
        while len(self._built) > 2:
            del self._built[next(iter(self._built))]
        return tree
