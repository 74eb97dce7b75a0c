"""Distributed ledger: a signed hash chain and gas-metered energy-trading contracts."""
