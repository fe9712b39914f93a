"""Read models built from the event log: journal, balances, refund statuses."""
