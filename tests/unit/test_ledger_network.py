"""Ledger network: the seeded peer graph, gossip arrival times, the presets in the scenario and world."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import simpy
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from cosim.errors import ScenarioError
from cosim.models.ledger.component import build_ledger, network_params
from cosim.models.ledger.consensus import simulate
from cosim.models.ledger.network import (
    BITCOIN,
    DEFAULT_ONE_WAY_DELAY_S,
    DEFAULT_REGIONS,
    GossipNetwork,
    GossipParams,
    Network,
    peer_graph,
)
from cosim.scenario import load_scenario

SMALL = dataclasses.replace(BITCOIN, nodes=40, peers=3, jitter_sd_s=0.0)


def _gossip(params: GossipParams = SMALL, validators: int = 6, seed: int = 0) -> GossipNetwork:
    return GossipNetwork(
        simpy.Environment(), np.random.default_rng(seed + 100), list(DEFAULT_REGIONS),
        DEFAULT_ONE_WAY_DELAY_S, params, validators, np.random.default_rng(seed),
    )  # fmt: skip


@pytest.mark.parametrize(("n", "peers"), [(2, 1), (50, 1), (200, 2), (1000, 8)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_peer_graph_is_connected_with_peers_links_per_node(n: int, peers: int, seed: int) -> None:
    """Every node has at least ``peers`` distinct neighbours, no self-loop, and the graph is connected."""
    u, v = peer_graph(n, peers, np.random.default_rng(seed))
    assert (u < v).all() and len(set(zip(u.tolist(), v.tolist(), strict=True))) == len(u)
    degree = np.bincount(np.concatenate([u, v]), minlength=n)
    assert degree.min() >= peers
    adj = csr_matrix((np.ones(len(u)), (u, v)), shape=(n, n))
    assert connected_components(adj, directed=False)[0] == 1


def test_peer_graph_is_deterministic_per_seed() -> None:
    """The same seed gives the same graph; another seed another one."""
    a, b, c = (peer_graph(300, 8, np.random.default_rng(s)) for s in (7, 7, 8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_gossip_arrival_is_the_shortest_path_of_hop_costs() -> None:
    """Without jitter, arrival times equal networkx's Dijkstra over the documented per-hop costs."""
    net, size = _gossip(), 50_000.0
    g = nx.DiGraph()
    delay, region, bw = DEFAULT_ONE_WAY_DELAY_S, net.graph_region, net.node_bandwidth_mbps
    for a, b in zip(*net.links, strict=True):
        for x, y in ((a, b), (b, a)):
            hop = 3 * delay[region[x], region[y]] + size * 8 / (min(bw[x], bw[y]) * 1e6)
            g.add_edge(
                int(x), int(y), weight=hop + SMALL.validation_s + size / 1e6 * SMALL.validation_s_per_mb
            )
    for src in range(net.n_nodes):
        ref = nx.single_source_dijkstra_path_length(g, int(net.validator_node[src]))
        expect = np.array([ref[int(k)] for k in net.validator_node])
        assert net.broadcast(src, size, at_s=10.0) == pytest.approx(10.0 + expect, rel=1e-12, abs=1e-12)
        assert net.send(src, (src + 1) % net.n_nodes, size) == pytest.approx(expect[(src + 1) % net.n_nodes])
        every = net.propagation_s(int(net.validator_node[src]), size)
        assert every == pytest.approx(np.array([ref[k] for k in range(SMALL.nodes)]))


def test_gossip_all_to_all_matches_broadcast_and_base_delay() -> None:
    """Row j of all_to_all is j's broadcast; base_delay_s is the zero-size delay; bigger blocks are slower."""
    net = _gossip()
    send_s = np.arange(net.n_nodes, dtype=float)
    send_s[2] = np.inf
    arrival = net.all_to_all(send_s, 1000.0)
    for j in range(net.n_nodes):
        assert arrival[j] == pytest.approx(net.broadcast(j, 1000.0, at_s=send_s[j]))
        assert arrival[j, j] == send_s[j]
    assert np.allclose(net.all_to_all(np.zeros(net.n_nodes), 0.0), net.base_delay_s)
    big, small, off = (
        net.all_to_all(np.zeros(6), 1e6),
        net.all_to_all(np.zeros(6), 1e3),
        ~np.eye(6, dtype=bool),
    )
    assert (big[off] > small[off] + 1.0).all()  # a MB takes > 1 s of validation per hop alone


def test_gossip_network_is_deterministic_per_graph_seed() -> None:
    """The graph seed fixes graph, throughputs and validator places; the message rng only the jitter."""
    a, b, c = _gossip(BITCOIN, 16, 5), _gossip(BITCOIN, 16, 5), _gossip(BITCOIN, 16, 6)
    assert np.array_equal(a.validator_node, b.validator_node) and np.array_equal(
        a.base_delay_s, b.base_delay_s
    )
    assert not np.array_equal(a.base_delay_s, c.base_delay_s)
    assert len(np.unique(a.validator_node)) == 16


def test_gossip_params_refuse_non_finite_or_out_of_range_values() -> None:
    """Throughput, validation times must be finite and positive; peers below nodes."""
    for change in (
        {"bandwidth_mbps": np.inf},
        {"validation_s": 0.0},
        {"jitter_sd_s": np.nan},
        {"peers": 1000},
    ):
        with pytest.raises(ValueError):
            dataclasses.replace(BITCOIN, **change)
    with pytest.raises(ValueError, match="validators"):
        _gossip(SMALL, validators=41)


def test_direct_preset_is_unchanged_by_the_gossip_option() -> None:
    """Without ``gossip`` an engine keeps the direct network and the same results as before."""
    submit = np.sort(np.random.default_rng(0).uniform(0, 3600, 200))
    a = simulate("bft", submit, validators=4, rng=np.random.default_rng(1), duration_s=3600.0)
    b = simulate("bft", submit, validators=4, rng=np.random.default_rng(1), duration_s=3600.0, gossip=None)
    assert a.blocks == b.blocks
    net = Network(simpy.Environment(), np.random.default_rng(0), ["x"], np.array([[0.02]]), 0.0, 100.0, 3)
    assert net.broadcast(0, 0.0, at_s=1.0).tolist() == [1.0, 1.02, 1.02]


def test_pow_on_gossip_is_reproducible_and_slower_than_direct() -> None:
    """PoW on the bitcoin preset: same seeds, same chain; 80 kB blocks every 60 s fork more than direct."""
    submit = np.sort(np.random.default_rng(0).uniform(0, 60 * 400, 400 * 320))
    kw = {"validators": 20, "duration_s": 60 * 400.0, "block_interval_s": 60.0, "block_tx_limit": 320}
    a, b = (
        simulate("pow", submit, rng=np.random.default_rng(3), gossip=BITCOIN, graph_seed=9, **kw)
        for _ in "ab"
    )
    direct = simulate("pow", submit, rng=np.random.default_rng(3), **kw)
    assert a.blocks == b.blocks
    stale = np.mean([x.stale for x in a.blocks])
    assert stale > 0.05 > np.mean([x.stale for x in direct.blocks])


LEDGER = """
name: l
seed: 4
time: {start: 2016-06-01T00:00:00, duration: 1d, step: 1h}
"""


def _load(tmp_path: Path, ledger: str) -> object:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(LEDGER) + ledger)
    return load_scenario(path)


def test_preset_defaults_follow_the_consensus(tmp_path: Path) -> None:
    """pow gossips on the bitcoin preset; pos and bft keep the direct network; an explicit preset wins."""
    cases = {
        "ledger: {consensus: pow, workload: {tx_per_s: 1}}": "bitcoin",
        "ledger: {consensus: bft, workload: {tx_per_s: 1}}": "direct",
        "ledger: {consensus: pos, workload: {tx_per_s: 1}}": "direct",
        "ledger: {consensus: pow, workload: {tx_per_s: 1}, network: {preset: direct}}": "direct",
        "ledger: {consensus: bft, workload: {tx_per_s: 1}, network: {preset: bitcoin, nodes: 50}}": "bitcoin",
    }
    for text, preset in cases.items():
        s = _load(tmp_path, text)
        assert s.ledger.network_preset == preset  # type: ignore[attr-defined]
        params = network_params(s)  # type: ignore[arg-type]
        assert ("gossip" in params) == (preset == "bitcoin")


def test_world_builds_the_gossip_network_from_the_scenario(tmp_path: Path) -> None:
    """Overrides replace the preset's values; the graph comes from the scenario seed, so two builds agree."""
    text = "ledger: {consensus: pow, validators: 10, workload: {tx_per_s: 1}, network: {nodes: 60, peers: 4}}"
    s = _load(tmp_path, text)
    params = network_params(s)  # type: ignore[arg-type]
    assert params["gossip"] == dataclasses.replace(BITCOIN, nodes=60, peers=4)
    a, b = build_ledger(s, 5), build_ledger(s, 5)  # type: ignore[arg-type]
    assert a is not None and b is not None
    net_a, net_b = a[0].engine.net, b[0].engine.net
    assert isinstance(net_a, GossipNetwork) and net_a.n_graph_nodes == 60
    assert np.array_equal(net_a.base_delay_s, net_b.base_delay_s)
    assert a[1]["network"] == "bitcoin"


@pytest.mark.parametrize(
    ("ledger", "message"),
    [
        (
            "{consensus: bft, workload: {tx_per_s: 1}, network: {peers: 4}}",
            "only used by network.preset bitcoin",
        ),
        (
            "{consensus: pow, validators: 20, workload: {tx_per_s: 1}, network: {nodes: 10}}",
            "at least validators",
        ),
        ("{consensus: pow, workload: {tx_per_s: 1}, network: {nodes: 20, peers: 20}}", "below network.nodes"),
        ("{consensus: pow, workload: {tx_per_s: 1}, network: {bandwidth_mbps: .inf}}", "finite"),
        ("{consensus: pow, workload: {tx_per_s: 1}, network: {validation_s: 0}}", "greater than 0"),
        ("{consensus: pow, workload: {tx_per_s: 1}, network: {preset: gossip}}", "bitcoin"),
        ("{consensus: pow, workload: {tx_per_s: 1}, network: {fanout: 3}}", "network.fanout"),
    ],
)
def test_network_keys_are_validated(tmp_path: Path, ledger: str, message: str) -> None:
    """Gossip keys fit the preset and the validators, values are finite and positive, unknown keys refused."""
    with pytest.raises(ScenarioError) as info:
        _load(tmp_path, "ledger: " + ledger)
    assert message in str(info.value), str(info.value)
