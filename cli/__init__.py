"""The `leadledger` command line: parses, calls ledger.Ledger, formats."""
