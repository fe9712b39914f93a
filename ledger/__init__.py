"""leadledger: an event-sourced billing ledger for lead marketplaces.

    >>> from leadledger import Ledger
    >>> with Ledger.from_url("sqlite:///:memory:") as ledger:
    ...     ledger.init()

``Ledger`` and ``AppendResult`` load on first use: ``leadledger --help`` and the
read-nothing paths of the CLI start without eventsourcing, pydantic or psycopg
(issue 9: start-up under 0.3 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leadledger.application import AppendResult, Ledger

__all__ = ["AppendResult", "Ledger", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Ledger", "AppendResult"):
        from leadledger import application

        return getattr(application, name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("leadledger")
        except PackageNotFoundError:  # imported from a source tree that was never installed
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'leadledger' has no attribute {name!r}")
