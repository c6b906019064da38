"""
rustybeam: live HTML documents served over HTTP selector ranges and WebSocket StreamItems.

The public embedding API is re-exported here; see the README's "Embedding" section.
"""

from __future__ import annotations

__version__ = "0.1.0"
