"""Message-delay models of a geo-distributed validator network (SimPy clock, numpy delays).

``Network`` (preset ``direct``) is a direct broadcast: every node receives a message after the one-way
delay between the two regions, plus half-normal jitter, plus the serialisation time ``size * 8 /
bandwidth``; no relaying, no validation, so its delays are lower bounds of real gossip.
``GossipNetwork`` (preset ``bitcoin``) relays over a seeded random peer graph: a message reaches a node
along the fastest path, each hop costing the inv/getdata/data exchange (three one-way delays), the
transmission ``size * 8 / bandwidth`` of the slower end of the link, and the receiver's validation. Arrival
times are shortest paths (scipy's Dijkstra over the whole graph, one call per message).
"""

from __future__ import annotations

import numpy as np
import simpy
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.special import ndtri

from .presets import BITCOIN, BITCOIN_REFERENCE_BLOCK_BYTES, GossipParams

__all__ = [
    "BITCOIN",
    "BITCOIN_REFERENCE_BLOCK_BYTES",
    "DEFAULT_ONE_WAY_DELAY_S",
    "DEFAULT_REGIONS",
    "GossipNetwork",
    "GossipParams",
    "Network",
    "default_network",
    "peer_graph",
]

DEFAULT_REGIONS: tuple[str, ...] = ("us-east", "us-west", "eu-west", "ap-northeast", "ap-southeast")

# One-way delays (s): half of approximate median round-trip pings between New York, San Francisco, London,
# Tokyo and Sydney from the WonderNetwork global ping statistics (wondernetwork.com/pings), rounded to 1 ms;
# 5 ms inside a region. Inter-continental one-way delays span ~35-130 ms, consistent with the propagation
# measurements of Decker & Wattenhofer (2013, "Information propagation in the Bitcoin network", IEEE P2P).
DEFAULT_ONE_WAY_DELAY_S: np.ndarray = (
    np.array(
        [
            [5, 34, 36, 80, 100],
            [34, 5, 70, 55, 75],
            [36, 70, 5, 112, 132],
            [80, 55, 112, 5, 52],
            [100, 75, 132, 52, 5],
        ],
        dtype=float,
    )
    * 1e-3
)


class Network:
    """Validators placed round-robin over regions, exchanging messages with region-to-region delays.

    Parameters
    ----------
    env : simpy.Environment
        Clock; ``broadcast`` sends at ``env.now`` unless told otherwise.
    rng : numpy.random.Generator
        Source of the jitter.
    regions : list of str
        Region names, indexing the rows and columns of ``one_way_delay_s``.
    one_way_delay_s : ndarray, shape (R, R)
        One-way delay between regions (s).
    jitter_sd_s : float
        Standard deviation of the normal jitter; its absolute value is added to each message (s).
    bandwidth_mbps : float
        Link bandwidth (Mbit/s); ``inf`` for no serialisation delay.
    n_nodes : int
        Number of nodes; node ``k`` sits in region ``k % R``.
    """

    def __init__(
        self,
        env: simpy.Environment,
        rng: np.random.Generator,
        regions: list[str],
        one_way_delay_s: np.ndarray,
        jitter_sd_s: float,
        bandwidth_mbps: float,
        n_nodes: int | None = None,
    ) -> None:
        delay = np.asarray(one_way_delay_s, dtype=float)
        if delay.shape != (len(regions), len(regions)) or (delay < 0).any():
            raise ValueError("one_way_delay_s must be a non-negative R x R matrix over the regions")
        self.env, self.rng, self.regions = env, rng, list(regions)
        self.one_way_delay_s, self.jitter_sd_s, self.bandwidth_mbps = (
            delay,
            float(jitter_sd_s),
            bandwidth_mbps,
        )
        n = len(regions) if n_nodes is None else n_nodes
        self.node_region = np.arange(n) % len(regions)
        self.base_delay_s = delay[np.ix_(self.node_region, self.node_region)]  # node x node, no jitter

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.node_region)

    def _serialisation_s(self, size_bytes: float) -> float:
        return size_bytes * 8.0 / (self.bandwidth_mbps * 1e6)

    def _jitter_s(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.jitter_sd_s == 0.0:
            return np.zeros(shape)
        return np.abs(self.rng.normal(0.0, self.jitter_sd_s, shape))

    def send(self, src: int, dst: int, size_bytes: float) -> float:
        """Delay (s) of one message from node ``src`` to node ``dst``; zero to itself."""
        if src == dst:
            return 0.0
        jitter = float(self._jitter_s((1,))[0])
        return float(self.base_delay_s[src, dst]) + jitter + self._serialisation_s(size_bytes)

    def broadcast(self, src: int, size_bytes: float, at_s: float | None = None) -> np.ndarray:
        """Arrival times (s) at every node of a message sent by ``src`` at ``at_s`` (default ``env.now``)."""
        t0_s = self.env.now if at_s is None else at_s
        delay_s = self.base_delay_s[src] + self._jitter_s((self.n_nodes,)) + self._serialisation_s(size_bytes)
        delay_s[src] = 0.0
        return t0_s + delay_s

    def all_to_all(self, send_s: np.ndarray, size_bytes: float) -> np.ndarray:
        """Arrival times ``[j, i]`` at node i of the message node j sends at ``send_s[j]`` (inf: not sent)."""
        n = self.n_nodes
        delay_s = self.base_delay_s + self._jitter_s((n, n))
        if serialisation_s := self._serialisation_s(size_bytes):  # (+ 0.0 changes no delay)
            delay_s += serialisation_s
        delay_s.flat[:: n + 1] = 0.0  # the diagonal
        return np.asarray(send_s, dtype=float)[:, None] + delay_s


def peer_graph(n_nodes: int, peers: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Undirected links ``(u, v)`` (u < v) of a connected random graph: every node links to ``peers`` others.

    Each node opens ``peers`` links to distinct nodes drawn uniformly (Bitcoin Core: 8 outbound
    connections); links carry traffic both ways, so the mean degree is about ``2 * peers``. If the draw
    leaves the graph disconnected, each other component is linked to the first one by one random link.
    """
    if not 1 <= peers < n_nodes:
        raise ValueError(f"peers must be between 1 and n_nodes - 1 ({n_nodes - 1})")
    src = np.repeat(np.arange(n_nodes), peers)
    # distinct targets per node, never itself: draw from the n - 1 others and skip the node's own index
    dst = np.concatenate([rng.choice(n_nodes - 1, size=peers, replace=False) for _ in range(n_nodes)])
    dst = dst + (dst >= src)
    links = np.unique(np.sort(np.stack([src, dst], axis=1), axis=1), axis=0)
    adj = csr_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(n_nodes, n_nodes))
    n_comp, label = connected_components(adj, directed=False)
    extra = [
        sorted((int(rng.choice(np.flatnonzero(label == 0))), int(rng.choice(np.flatnonzero(label == c)))))
        for c in range(1, n_comp)
    ]
    if extra:
        links = np.unique(np.concatenate([links, np.array(extra)]), axis=0)
    return links[:, 0], links[:, 1]


class GossipNetwork(Network):
    """Validators on a random peer graph of ``params.nodes`` nodes; messages relayed hop by hop.

    Node ``k`` of the graph sits in region ``k % R``; the validators occupy ``n_validators`` distinct
    nodes drawn at random, the other nodes only relay. A hop ``u -> v`` costs three one-way delays
    between their regions (inv, getdata, data), ``size * 8 / min(bw_u, bw_v)`` (per-node throughput,
    lognormal across nodes: its quantiles dealt at random), the receiver's validation
    ``validation_s + size * validation_s_per_mb``, and per-message half-normal jitter. A message reaches
    each node along its fastest path. The API of
    ``Network`` (``send``, ``broadcast``, ``all_to_all``, ``base_delay_s``) is over the validators.

    Parameters
    ----------
    env, rng, regions, one_way_delay_s : as for ``Network`` (``rng`` draws the per-message jitter)
    params : GossipParams
    n_validators : int
        Number of validators (at most ``params.nodes``).
    graph_rng : numpy.random.Generator
        Source of the graph, the node throughputs and the validators' places (the study's seed).
    """

    def __init__(
        self,
        env: simpy.Environment,
        rng: np.random.Generator,
        regions: list[str],
        one_way_delay_s: np.ndarray,
        params: GossipParams,
        n_validators: int,
        graph_rng: np.random.Generator,
    ) -> None:
        if n_validators > params.nodes:
            raise ValueError(
                f"gossip nodes ({params.nodes}) must be at least the validators ({n_validators})"
            )
        delay = np.asarray(one_way_delay_s, dtype=float)
        if delay.shape != (len(regions), len(regions)) or (delay < 0).any():
            raise ValueError("one_way_delay_s must be a non-negative R x R matrix over the regions")
        self.env, self.rng, self.regions, self.params = env, rng, list(regions), params
        self.one_way_delay_s, self.jitter_sd_s = delay, params.jitter_sd_s
        self.bandwidth_mbps = params.bandwidth_mbps
        n = params.nodes
        self.graph_region = np.arange(n) % len(regions)
        u, v = peer_graph(n, params.peers, graph_rng)
        self.links = (u, v)
        # the lognormal's n quantiles, dealt to the nodes at random (no sampling noise in the spread)
        z = ndtri((np.arange(n) + 0.5) / n)
        self.node_bandwidth_mbps = params.bandwidth_mbps * np.exp(
            params.bandwidth_sigma * graph_rng.permutation(z)
        )
        self.validator_node = np.sort(graph_rng.choice(n, size=n_validators, replace=False))
        self.node_region = self.graph_region[self.validator_node]
        # directed hops in CSR order: per hop, the size-independent cost and the seconds per byte
        tail, head = np.concatenate([u, v]), np.concatenate([v, u])
        order = np.lexsort((head, tail))
        tail, head = tail[order], head[order]
        self._indices = head.astype(np.int32)
        self._indptr = np.searchsorted(tail, np.arange(n + 1)).astype(np.int32)
        lat = 3.0 * delay[self.graph_region[tail], self.graph_region[head]]
        self._fixed_s = lat + params.validation_s
        bw = np.minimum(self.node_bandwidth_mbps[tail], self.node_bandwidth_mbps[head])
        self._s_per_byte = 8.0 / (bw * 1e6) + params.validation_s_per_mb / 1e6
        self.base_delay_s = self._paths(self.validator_node, 0.0, jitter=False)[:, self.validator_node]

    @property
    def n_graph_nodes(self) -> int:
        """Number of nodes of the peer graph (validators and relays)."""
        return self.params.nodes

    def _paths(self, sources: np.ndarray, size_bytes: float, jitter: bool = True) -> np.ndarray:
        """Fastest-path delays ``[k, node]`` from graph node ``sources[k]`` of a ``size_bytes`` message."""
        cost = self._fixed_s + size_bytes * self._s_per_byte
        if jitter:
            cost = cost + self._jitter_s(cost.shape)
        n = self.params.nodes
        graph = csr_matrix((cost, self._indices, self._indptr), shape=(n, n))
        return np.atleast_2d(dijkstra(graph, directed=True, indices=sources))

    def propagation_s(self, src_node: int, size_bytes: float) -> np.ndarray:
        """Delays (s) until each graph node has a ``size_bytes`` message graph node ``src_node`` sent."""
        return self._paths(np.array([src_node]), size_bytes)[0]

    def weighted_delay_s(self, share: np.ndarray, size_bytes: float, draws: int = 20) -> np.ndarray:
        """Per validator m, ``sum_j share_j * delay(m -> j)`` (s) for ``size_bytes``, jitter averaged.

        With hash-power shares this is the exposure of m's block to a competing one: the PoW race gives a
        fork with probability ``1 - exp(-D_m / T)`` for block interval T; its share-weighted mean is the
        network's effective delay ``tau`` of the formula ``1 - exp(-tau / T)``.
        """
        zero = np.zeros(self.n_nodes)
        delay_s = np.mean([self.all_to_all(zero, size_bytes) for _ in range(draws)], axis=0)
        return delay_s @ (np.asarray(share, dtype=float) / np.sum(share))

    def send(self, src: int, dst: int, size_bytes: float) -> float:
        """Delay (s) of one message from validator ``src`` to validator ``dst``; zero to itself."""
        if src == dst:
            return 0.0
        return float(self._paths(self.validator_node[[src]], size_bytes)[0, self.validator_node[dst]])

    def broadcast(self, src: int, size_bytes: float, at_s: float | None = None) -> np.ndarray:
        """Arrival times (s) at every validator of a message validator ``src`` sends at ``at_s``."""
        t0_s = self.env.now if at_s is None else at_s
        return t0_s + self._paths(self.validator_node[[src]], size_bytes)[0, self.validator_node]

    def all_to_all(self, send_s: np.ndarray, size_bytes: float) -> np.ndarray:
        """Arrival times ``[j, i]`` at validator i of the message j sends at ``send_s[j]`` (inf: not sent)."""
        delay_s = self._paths(self.validator_node, size_bytes)[:, self.validator_node]
        return np.asarray(send_s, dtype=float)[:, None] + delay_s


def default_network(
    env: simpy.Environment,
    rng: np.random.Generator,
    n_nodes: int,
    jitter_sd_s: float = 0.005,
    bandwidth_mbps: float = 100.0,
) -> Network:
    """Network of ``n_nodes`` spread over the five default regions with the default delay table."""
    return Network(
        env, rng, list(DEFAULT_REGIONS), DEFAULT_ONE_WAY_DELAY_S, jitter_sd_s, bandwidth_mbps, n_nodes
    )
