"""Read a run's HDF5 file as pandas objects indexed by time, element names as columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from cosim.errors import ResultsError


class Results:
    """One run's results; ``res["grid/bus/vm_pu"]`` is a DataFrame (time x bus names).

    1-D series (``grid/losses_mw``) come back as a pandas Series. Use as a context manager or
    call :meth:`close`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            partial = self.path.with_name(self.path.name + ".partial")
            hint = f"; an interrupted run left {partial}" if partial.is_file() else ""
            raise ResultsError(f"no results file {self.path}{hint}")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise ResultsError(f"{self.path} is not an HDF5 file: {exc}") from None
        if "time" not in self._file or "scenario_yaml" not in self._file.attrs:
            self._file.close()
            raise ResultsError(f"{self.path} is not a cosim results file (no /time or scenario_yaml)")
        self.index = pd.DatetimeIndex(pd.to_datetime(self._file["time"][:], unit="s", utc=True), name="time")

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes: scenario_yaml, seed, versions, code_version, complete, ..."""
        return dict(self._file.attrs)

    def keys(self) -> list[str]:
        """Paths of every time series in the file."""
        found: list[str] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 and obj.shape[0] == len(self.index):
                if name != "time" and obj.maxshape[0] is None:
                    found.append(name)

        self._file.visititems(visit)
        return found

    def __getitem__(self, name: str) -> pd.DataFrame | pd.Series:
        name = name.strip("/")
        if name not in self._file:
            raise KeyError(f"{name!r} is not in {self.path}; it has {', '.join(self.keys())}")
        ds = self._file[name]
        data = ds[:]
        if ds.ndim == 1 and ds.maxshape[0] is None:
            return pd.Series(data, index=self.index, name=name)
        if ds.ndim == 1:  # a static dataset (names, indices)
            return pd.Series(ds.asstr()[:] if h5py.check_string_dtype(ds.dtype) else data, name=name)
        columns = ds.attrs.get("columns", "")
        labels = self._file[columns].asstr()[:] if columns else np.arange(ds.shape[1])
        return pd.DataFrame(data, index=self.index, columns=pd.Index(labels, name=columns or None))

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_results(path: str | Path) -> Results:
    """Open a run's HDF5 file; see :class:`Results`."""
    return Results(path)


def verify_ledger(path: str | Path) -> tuple[bool, str | None, int, int]:
    """Re-check the hash chain stored in a run's ``/ledger`` tables.

    Every hash link, Merkle root, transaction id and signature of the chain (the non-stale rows of
    ``/ledger/blocks`` and the transactions they carry: the ``/ledger/tx`` rows of their height, in row
    order) is recomputed from the stored bytes.

    Returns
    -------
    ``(ok, problem, n_blocks, n_tx)``: ``problem`` names the first altered block (by height) or transaction.
    Raises ResultsError when the file has no stored chain.
    """
    from cosim.models.ledger.chain import canonical, verify_records

    with h5py.File(path, "r") as f:
        if "ledger/blocks" not in f or "ledger/tx" not in f:
            raise ResultsError(
                f"{path} has no /ledger/blocks and /ledger/tx tables (ledger.record_tables false?)"
            )
        b, t = f["ledger/blocks"], f["ledger/tx"]
        in_chain = t["height"][:] >= 0
        height = t["height"][:][in_chain]
        cols = {c: t[c].asstr()[:][in_chain] for c in ("tx_id", "kind", "payload", "sender", "signatures")}
        nonce = t["nonce"][:][in_chain]
        txs = [
            {
                "tx_id": cols["tx_id"][i], "kind": cols["kind"][i], "payload": cols["payload"][i],
                "sender": cols["sender"][i], "nonce": int(nonce[i]), "signatures": cols["signatures"][i],
            }
            for i in range(len(nonce))
        ]  # fmt: skip
        ids_of: dict[int, list[str]] = {}
        for h, tx_id in zip(height.tolist(), cols["tx_id"].tolist(), strict=True):
            ids_of.setdefault(h, []).append(tx_id)
        live = ~b["stale"][:]
        blocks = [
            {
                "height": h, "time_s": ts, "prev_hash": ph, "merkle_root": mr, "hash": hh,
                "tx_ids": canonical(ids_of.get(h, [])).decode(),
                "proposer": "genesis" if p < 0 else f"validator-{p}",
            }
            for h, ts, p, ph, mr, hh in zip(
                b["height"][:][live].tolist(), b["time_s"][:][live].tolist(), b["proposer"][:][live].tolist(),
                *(b[c].asstr()[:][live] for c in ("prev_hash", "merkle_root", "hash")), strict=True,
            )
        ]  # fmt: skip
    ok, problem = verify_records(blocks, txs)
    return ok, problem, len(blocks), len(txs)
