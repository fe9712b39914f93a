"""leadledger: an event-sourced billing ledger for lead marketplaces.

    >>> from leadledger import Ledger
    >>> with Ledger.from_url("sqlite:///:memory:") as ledger:
    ...     ledger.init()
"""

from importlib.metadata import PackageNotFoundError, version

from leadledger.application import AppendResult, Ledger

try:
    __version__ = version("leadledger")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["AppendResult", "Ledger", "__version__"]
