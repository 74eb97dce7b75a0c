"""A rewriter's tools for the stored ledger tables: edit rows, then recompute every root and hash.

The rewriter holds no validator key: ``rehash`` leaves the signatures as they were (a test re-signs with a
model's keys to prove that the re-execution of the contracts alone catches a receipt).
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from cosim.models.ledger.chain import Block, merkle_root, receipt_leaf

Cols = dict[str, np.ndarray]


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def read(f: h5py.File, table: str) -> Cols:
    """Every column of ``/ledger/<table>`` (not its row coordinate)."""
    group = f[f"ledger/{table}"]
    return {c: group[c][:] for c in group if not group[c].is_scale}


def write(f: h5py.File, table: str, cols: Cols) -> None:
    """Replace ``/ledger/<table>`` by ``cols`` (rows may have been added or removed; the row coordinate
    is renumbered)."""
    group = f[f"ledger/{table}"]
    n = len(next(iter(cols.values())))
    for c in group:
        ds = group[c]
        if ds.is_scale:
            ds.resize(n, axis=0)
            ds[:] = np.arange(n)
    for c, v in cols.items():
        ds = group[c]
        ds.resize(len(v), axis=0)
        ds[:] = v


def take(cols: Cols, keep: np.ndarray) -> Cols:
    """Rows ``keep`` (indices or a mask) of every column."""
    return {c: v[keep] for c, v in cols.items()}


def insert(cols: Cols, at: int, row: dict[str, Any]) -> Cols:
    """``cols`` with ``row`` inserted before row ``at``."""
    return {c: np.insert(v, at, np.asarray(row[c], dtype=v.dtype)) for c, v in cols.items()}


def rehash(blocks: Cols, tx: Cols, from_height: int) -> list[Block]:
    """Recompute n_tx, gas, Merkle and receipts roots, hashes and links of the chain from ``from_height``
    on (in place), as a rewriter without keys would; returns the new headers of those blocks."""
    live = np.flatnonzero(~blocks["stale"].astype(bool))
    prev = _s(blocks["hash"][live[from_height - 1]])
    out = []
    for h in range(from_height, len(live)):
        r = live[h]
        rows = np.flatnonzero(tx["height"] == h)
        ids = tuple(_s(x) for x in tx["tx_id"][rows])
        leaves = [
            receipt_leaf(_s(tx["tx_id"][i]), _s(tx["status"][i]), int(tx["gas_used"][i]),
                         float(tx["submit_s"][i]),
                         float(tx["include_s"][i]), float(tx["final_s"][i]))
            for i in rows
        ]  # fmt: skip
        gas = int(tx["gas_used"][rows].sum())
        block = Block(
            h, float(blocks["time_s"][r]), f"validator-{int(blocks['proposer'][r])}", prev,
            merkle_root(ids), ids,
            merkle_root(leaves), gas, int(blocks["size_bytes"][r]), float(blocks["final_s"][r]),
            int(blocks["nonce"][r]),
        )  # fmt: skip
        blocks["prev_hash"][r], blocks["merkle_root"][r] = prev, block.merkle_root
        blocks["receipts_root"][r], blocks["n_tx"][r], blocks["gas_used"][r] = (
            block.receipts_root,
            len(ids),
            gas,
        )
        blocks["hash"][r] = prev = block.hash
        out.append(block)
    return out
