"""The ledger component: the chain that records and settles the trades, its consensus and network."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from cosim.checkpoint import InputLog, checkpoint_every, checkpoint_path, log_path
from cosim.component import Component, Contract, Dataset, Link, plain_scenario, rng_for
from cosim.machine import usable_cores
from cosim.models.adapter import SolverStats
from cosim.models.ledger.consensus import ENGINES
from cosim.models.ledger.ledger import BLOCK_COLUMNS, TX_COLUMNS, VOTE_COLUMNS, LedgerModel
from cosim.models.ledger.network import BITCOIN, GossipParams
from cosim.models.ledger.sim import SERIES, ledger_step, replay
from cosim.models.ledger.worker import LedgerWorker
from cosim.scenario import Scenario

_TABLES = "record_tables"
DATASETS: tuple[Dataset, ...] = (
    Dataset("ledger/throughput_tps", "1/s", None, "transactions made final in the step per second",
            attr="throughput_tps"),
    Dataset("ledger/latency_p50_s", "s", None, "median submit -> inclusion of the transactions made final in "
            "the step", attr="latency_p50_s", note="NaN: none made final"),
    Dataset("ledger/latency_p95_s", "s", None, "95th percentile submit -> inclusion", attr="latency_p95_s"),
    Dataset("ledger/finality_p50_s", "s", None, "median submit -> finality of the transactions made final in "
            "the step", attr="finality_p50_s"),
    Dataset("ledger/finality_p95_s", "s", None, "95th percentile submit -> finality", attr="finality_p95_s"),
    Dataset("ledger/energy_kwh", "kWh", None, "electricity used by the validators (miners) in the step",
            attr="energy_kwh"),
    Dataset("ledger/n_late", "1", None, "trades not final by their deadline (start of delivery), counted at "
            "the deadline", np.int64, attr="n_late", note="counted once, in the step the deadline passes"),
    Dataset("ledger/late_cost", "$", None, "imbalance cost of the cancelled late trades (late_rule cancel)",
            attr="late_cost"),
    Dataset("ledger/tx", "", "tx", "every transaction once its fate is known (final, rejected, or run end)",
            when=_TABLES, kind="table", attr="tx", columns=TX_COLUMNS,
            note="still open at the end of the run: `pending`, height -1; `status` is the contract receipt "
            "(`ok`, `insufficient_balance`, `double_spend`, `out_of_gas`, ...), a gateway rejection "
            "(`bad_signature`, `replay`) or `pending`"),
    Dataset("ledger/blocks", "", "block", "decided blocks: the hash chain (from genesis) and stale forks",
            when=_TABLES, kind="table", attr="blocks", columns=BLOCK_COLUMNS,
            note="genesis: height 0, proposer -1; PoW's stale blocks lost a fork (hash fields empty); a "
            "block's transactions are the `/ledger/tx` rows of its height, in row order (its Merkle tree's); "
            "`signature`: its proposer's Ed25519 signature of `cosim-block:` + the hash bytes"),
    Dataset("ledger/votes", "", "vote", "signed votes: BFT commit certificates, PoS checkpoint attestations, "
            "the end-of-run head", when=_TABLES, kind="table", attr="votes", columns=VOTE_COLUMNS,
            note="`commit`: precommits of validators holding > 2/3 of the voting power over "
            '`{"type":"precommit","height","block"}`; `attest`: > 2/3 of the stake on an epoch\'s checkpoint '
            'over `{"type":"attest","epoch","checkpoint"}`; `head`: > 2/3 of the power at the end of the run '
            'over `{"type":"head","height","block","n_tx"}`; messages are canonical JSON'),
    Dataset("ledger/genesis", "canonical JSON", "registry", "the genesis registry", object, _TABLES, "static",
            note="consensus, `epoch_unix_s`, `pow_bits`, PoS `slot_s`/`slots_per_epoch`, `validators` "
            "([public key hex, power] by index), `meter_keys`, `balances_micro`, `penalty_ppm`, "
            "`settle_on_meter`, `gas_limit`"),
)  # fmt: skip
GOSSIP_FIELDS = tuple(f.name for f in dataclasses.fields(GossipParams))


def nakamoto_coefficient(power: np.ndarray) -> int:
    """Fewest validators holding more than 1/3 of the voting power (enough to halt finality)."""
    share = np.sort(power)[::-1] / power.sum()
    return int(np.searchsorted(np.cumsum(share), 1.0 / 3.0, side="right") + 1)


def network_params(scenario: Scenario) -> dict[str, Any]:
    """The consensus engine's network keywords for the scenario's ``ledger.network`` (preset resolved)."""
    assert scenario.ledger is not None
    net = scenario.ledger.network
    out: dict[str, Any] = {}
    if net.regions is not None:
        out |= {"regions": net.regions, "one_way_delay_s": np.asarray(net.one_way_delay_ms) / 1e3}
    if scenario.ledger.network_preset == "direct":
        return out | {
            "jitter_sd_s": 0.005 if net.jitter_sd_s is None else net.jitter_sd_s,
            "bandwidth_mbps": 100.0 if net.bandwidth_mbps is None else net.bandwidth_mbps,
        }
    given = {k: getattr(net, k) for k in GOSSIP_FIELDS if getattr(net, k) is not None}
    graph_seed = int(rng_for(scenario.seed, "network").integers(2**63))
    return out | {"gossip": dataclasses.replace(BITCOIN, **given), "graph_seed": graph_seed}


def build_ledger(scenario: Scenario, n_accounts: int) -> tuple[LedgerModel, dict[str, Any]] | None:
    """The scenario's ledger model (consensus engine, keys, contracts) and the attributes describing it."""
    cfg = scenario.ledger
    if cfg is None:
        return None
    rng = rng_for(scenario.seed, "ledger")
    n = cfg.validators
    power = (
        np.ones(n) if cfg.is_permissioned or cfg.power_sigma == 0 else rng.lognormal(0.0, cfg.power_sigma, n)
    )
    common: dict[str, Any] = {"faulty": cfg.faulty} | network_params(scenario)
    specific: dict[str, dict[str, Any]] = {
        "pow": {
            "block_interval_s": cfg.block_interval_s, "confirmations": cfg.confirmations,
            "hash_rate_hps": cfg.hash_rate_hps or n * cfg.miner_hash_rate_hps,
            "j_per_hash": cfg.j_per_hash, "hash_share": power,
        },
        "pos": {
            "slot_s": cfg.slot_s, "slots_per_epoch": cfg.slots_per_epoch, "stake": power,
            "node_power_w": cfg.node_power_w,
        },
        "bft": {
            "voting_power": power, "behaviour": cfg.behaviour, "timeout_commit_s": cfg.timeout_commit_s,
            "timeout_propose_s": cfg.timeout_propose_s, "create_empty_blocks": cfg.create_empty_blocks,
            "node_power_w": cfg.node_power_w,
        },
    }  # fmt: skip
    engine = ENGINES[cfg.consensus](
        n, rng_for(scenario.seed, "consensus"), **common, **specific[cfg.consensus]
    )
    gate_s = 0.0 if cfg.workload is not None else cfg.gate_closure_s
    up = scenario.market.upstream if scenario.market is not None else None
    model = LedgerModel(
        engine,
        n_accounts,
        rng,
        epoch_unix_s=scenario.time.start.timestamp() - gate_s,
        step_s=scenario.time.step_s,
        gate_closure_s=gate_s,
        late_rule=cfg.late_rule,
        meter_delay_s=cfg.meter_delay_s,
        initial_balance=cfg.initial_balance,
        gas_limit=cfg.gas_limit,
        import_price_per_mwh=up.import_price_per_mwh if up else 0.0,
        export_price_per_mwh=up.export_price_per_mwh if up else 0.0,
        record_tables=cfg.record_tables,
        keep_history=False,  # the run's tables hold the chain: memory bounded by what is not final
    )
    attrs = {
        "consensus": cfg.consensus, "validators": n, "faulty": cfg.faulty, "behaviour": cfg.behaviour,
        "permissioned": cfg.is_permissioned, "nakamoto_coefficient": nakamoto_coefficient(power),
        "late_rule": cfg.late_rule, "gate_closure_s": gate_s, "power_w": engine.power_w,
        "network": cfg.network_preset,
    }  # fmt: skip
    return model, attrs


AUTO_WORKER_STEPS = 168
"""``orchestration.ledger_worker: auto`` runs the ledger in a worker process from this many steps on (a week
of hourly steps): shorter runs do not pay back the worker's start (about a second of imports and set-up)."""


def uses_worker(scenario: Scenario, with_market: bool) -> bool:
    """Whether the ledger runs a step behind in a worker process (``orchestration.ledger_worker``)."""
    choice = scenario.orchestration.ledger_worker
    if "ledger" in scenario.orchestration.remote:
        return False  # validated: not with ledger_worker true
    if choice != "auto":
        return bool(choice)
    long_enough = scenario.time.n_steps >= AUTO_WORKER_STEPS
    return with_market and usable_cores() >= 2 and long_enough and not _in_dask_worker()


def _in_dask_worker() -> bool:
    """Whether this run is a task of a Dask worker (a sweep's runs already share the cores)."""
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def ledger_summary(model: LedgerModel) -> dict[str, Any]:
    """The ledger's part of the run summary: the engine's notes, the rejected transactions, the warnings."""
    return {"notes": model.engine.notes, "n_rejected": model.n_rejected, "warnings": ledger_warnings(model)}


def ledger_warnings(model: LedgerModel) -> list[str]:
    """What a user must not miss: the ledger lost safety, halted or finalised nothing; transactions ran
    out of gas (a meter reading that does leaves its seller's promises of the interval unsettled)."""
    engine = model.engine
    text = str(getattr(engine, "notes", ""))
    found = []
    if "SAFETY LOST" in text:
        found.append(f"the ledger lost safety: {text}")
    elif getattr(engine, "halted", False):
        found.append(f"the ledger halted: {text}")
    elif getattr(engine, "justifies", True) is False:
        found.append(f"the ledger finalised nothing: {text}")
    if model.n_out_of_gas:
        found.append(
            f"{model.n_out_of_gas} transaction(s) ran out of gas (ledger.gas_limit {model.gas_limit:,}): "
            "a meter reading that does settles none of its seller's promises of the interval, whose escrow "
            "stays locked; raise ledger.gas_limit (a reading costs ~47,000 gas per promise it settles)"
        )
    return found


class Ledger(Component):
    """Orders, validates and settles the market's trades and the meters' readings on a simulated chain."""

    name, sim, sim_name, entity = "ledger", "cosim.models.ledger.sim:LedgerSim", "Ledger", "Ledger"
    reports = True
    state_attrs = ("stats", "log", "n_undelivered")

    def __init__(self, scenario: Scenario, built: dict[str, Any], n_accounts: int) -> None:
        self.scenario, self.built = scenario, built
        self.n_accounts = n_accounts
        self.model, self.attrs = build_ledger(scenario, n_accounts)  # type: ignore[misc]
        assert scenario.ledger is not None
        workload = scenario.ledger.workload
        self.tx_per_s = workload.tx_per_s if workload else 0.0
        self.step_s, self.n_steps = scenario.time.step_s, scenario.time.n_steps
        self.stats = SolverStats()
        # every step's inputs, appended to <output>.ckpt.log at each checkpoint: the SimPy engine cannot be
        # stored, a resume replays them
        log = log_path(checkpoint_path(scenario.output_path))
        self.log = InputLog(log) if checkpoint_every(scenario) else None
        self.overlap = uses_worker(scenario, "market" in built)
        self.worker: LedgerWorker | None = None
        self.n_undelivered = 0  # at a checkpoint: the last steps whose outputs the worker has not sent yet
        self.undelivered: list[tuple[int, dict[str, Any]]] = []  # their outputs, resumed without a worker
        self._replay_log: tuple[str, int, int, int] | None = None

    def state(self) -> dict[str, Any]:
        self.n_undelivered = self.worker.n_outstanding if self.worker is not None else 0
        return super().state()

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        if self.overlap:  # the worker replays the log when it starts, and sends the undelivered steps again
            if self.log is not None:
                self._replay_log = (
                    str(self.log.path), self.log.n_bytes, self.log.n_entries, self.n_undelivered
                )  # fmt: skip
            return
        logged = self.log.entries() if self.log is not None else []
        rest = replay(self.model, logged, self.tx_per_s, self.step_s, self.n_steps, self.n_undelivered)
        # a checkpoint of a run with a worker: outputs of its last steps were not recorded yet
        self.undelivered = [
            (k, vars(ledger_step(self.model, k, trades, p_mw, self.tx_per_s, self.step_s, self.n_steps)))
            for k, trades, p_mw in rest
        ]

    def contract(self, groups: Iterable[str]) -> Contract:
        if "ledger" not in set(groups):
            return Contract()
        out = Contract(attrs={f"ledger/{k}": v for k, v in self.attrs.items()})
        for a in SERIES:
            out.record(DATASETS, f"ledger/{a}")
        if self.model.record_tables:  # the chain, and the registry it is checked against
            for path in ("ledger/tx", "ledger/blocks", "ledger/votes"):
                out.record(DATASETS, path)
            out.add_static(DATASETS, {"ledger/genesis": np.array([self.model.genesis_json], dtype=object)})
            out.dims["ledger/genesis"] = ("registry",)
        return out

    def params(self, offset_s: int, carry: dict[str, Any]) -> dict[str, Any]:
        common = {
            "step_s": self.step_s, "n_steps": self.n_steps, "tx_per_s": self.tx_per_s, "stats": self.stats,
            "time_offset_s": offset_s, "log": self.log,
        }  # fmt: skip
        if not self.overlap:
            undelivered, self.undelivered = self.undelivered, []
            return common | {"model": self.model, "undelivered": undelivered}
        if self.worker is None:  # one worker for the whole run, across the segments
            self.worker = LedgerWorker(
                plain_scenario(self.scenario), self.n_accounts, self.tx_per_s, self.step_s, self.n_steps,
                self._replay_log,
            )  # fmt: skip
        return common | {"worker": self.worker, "validator_keys": self.model.validator_keys}

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        if self.log is not None:
            self.log.close()

    def plain_params(self, offset_s: int) -> dict[str, Any]:
        return {
            "scenario": plain_scenario(self.scenario), "n_accounts": self.n_accounts,
            "step_s": self.step_s, "n_steps": self.n_steps, "tx_per_s": self.tx_per_s,
            "time_offset_s": offset_s,
        }  # fmt: skip

    def links(self, k_from: int, carry: dict[str, Any]) -> list[Link]:
        if "market" not in self.built:
            return []
        return [Link("market", ("trades",)), Link("agents", ("p_mw",))]

    def finish(self, groups: Iterable[str]) -> Contract:
        attrs: dict[str, Any] = {"ledger_s": self.summary["ledger_s"]}
        if self.overlap:
            attrs |= {k: self.summary[k] for k in ("ledger_wait_s", "ledger_worker_peak_mb")}
        if "ledger" in set(groups):
            attrs |= {"ledger/notes": self.summary["notes"], "ledger/n_rejected": self.summary["n_rejected"]}
        return Contract(attrs=attrs)

    def warnings(self) -> list[str]:
        return list(self.summary["warnings"])


def build(scenario: Scenario, built: dict[str, Any]) -> Ledger | None:
    """The ledger, or None without a ledger section; without a grid it runs alone on its workload."""
    if scenario.ledger is None:
        return None
    agents = built.get("agents")
    if agents is not None:
        return Ledger(scenario, built, len(agents.fleet.table))
    assert scenario.ledger.workload is not None  # validated: a ledger without a grid has a workload
    return Ledger(scenario, built, scenario.ledger.workload.accounts)
