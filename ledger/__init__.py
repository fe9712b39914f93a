"""leadledger: an event-sourced billing ledger for lead marketplaces."""

from ledger.application import AppendResult, Ledger

__all__ = ["AppendResult", "Ledger"]
