"""Message-delay model of a geo-distributed validator network (SimPy clock, numpy delays).

Gossip is modelled as a direct broadcast: every node receives a message after the one-way delay between
the two regions, plus half-normal jitter, plus the serialisation time ``size * 8 / bandwidth``. Multi-hop
relaying and per-hop validation are ignored, so the delays are lower bounds of real gossip.
"""

from __future__ import annotations

import numpy as np
import simpy

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
        delay_s = self.base_delay_s + self._jitter_s((n, n)) + self._serialisation_s(size_bytes)
        np.fill_diagonal(delay_s, 0.0)
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
