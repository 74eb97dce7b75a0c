"""One agent seen as a learning bidder: what it observes, the bid an action means, what it earns.

Shared by the gymnasium environments (`cosim.rl`) and by a run whose ``agents.strategic`` agents bid by a
trained policy, so a policy sees in a study exactly what it saw in training.

Roles and actions (Box, load convention, prices $/MWh in ``[0, price_max_per_mwh]``):
- ``storage`` (a battery, or a household load that has one: the policy bids its battery, the reward is the
  whole household's): ``[charge_mw, charge_limit_price, discharge_mw, discharge_limit_price]``, quantities
  in ``[0, power_mw]``, clipped each step to what the state of charge allows;
- ``producer`` (gen, sgen, PV): ``[offer_mw, offer_price]``, clipped to the step's available output (and a
  generator's minimum);
- ``ev``: ``[charge_mw, limit_price]``, clipped to the charger while plugged in and the energy still needed;
  energy still needed at departure is charged at the value of lost load.

Observation (float32): ``[state, sin/cos time of day, sin/cos day of week, the last n_lags prices at the
agent's bus / price_max, forecast]`` with state = state of charge as a share of capacity (storage), energy
still needed as a share of the day's (EV), 0 (producer), and forecast = the household's next-step net load
/ battery power (storage), available output / offer limit (producer), plugged in 0/1 (EV).
"""

from __future__ import annotations

import difflib
from dataclasses import replace

import numpy as np

from cosim.errors import ScenarioError
from cosim.models.agents.fleet import Fleet
from cosim.models.market.bidding import Bidder
from cosim.models.market.clearing import Bids

OBS_NAMES_FIXED = ("state", "sin_time_of_day", "cos_time_of_day", "sin_day_of_week", "cos_day_of_week")


def default_price_max(bidder: Bidder, posted_per_mwh: np.ndarray | None = None) -> float:
    """Twice the highest ordinary price of supply, batteries and tariff: the limit-price range of actions."""
    r = bidder.rules
    prices = [r.import_price_per_mwh, r.battery_discharge_price_per_mwh, r.battery_charge_price_per_mwh]
    prices += [r.sgen_price_per_mwh, *np.asarray(bidder._prod_c1, dtype=float)]
    if posted_per_mwh is not None:
        prices.append(float(np.max(posted_per_mwh)))
    return 2.0 * max(max(prices), 1.0)


class AgentView:
    """The controlled agent ``name`` of a fleet: bounds, observation, bid override, reward.

    Parameters
    ----------
    fleet, bidder : the run's fleet and step layout
    name : agent name (as in /agents/name)
    price_max_per_mwh : upper bound of the limit prices
    n_lags : recent prices in the observation
    voll_per_mwh : price of an EV's energy still needed at departure
    bus_pos : position of the agent's bus in the market's price vector
    where : dotted YAML path of the name, for messages
    """

    def __init__(
        self,
        fleet: Fleet,
        bidder: Bidder,
        name: str,
        *,
        price_max_per_mwh: float,
        n_lags: int = 3,
        voll_per_mwh: float = 3000.0,
        bus_pos: int = 0,
        where: str = "agent",
    ) -> None:
        table = fleet.table
        names = [str(n) for n in table.name]
        self.fleet, self.bidder, self.name = fleet, bidder, name
        self.price_max, self.n_lags, self.voll = float(price_max_per_mwh), int(n_lags), float(voll_per_mwh)
        self.bus_pos, self.dt_h = int(bus_pos), fleet.step_s / 3600.0
        if name not in names:
            near = ", ".join(map(repr, difflib.get_close_matches(name, names, n=3, cutoff=0.0))) or "none"
            raise ScenarioError([(where, f"no agent named {name!r}; nearest: {near} (as in /agents/name)")])
        a = names.index(name)
        kind = str(table.kind[a])
        b = fleet.batteries
        batteries = list(table.where("battery"))
        self.kind, self.agent = kind, a
        if kind == "load" and a in set(b.household.tolist()):
            self.battery = int(np.flatnonzero(b.household == a)[0])
            self.device = int(batteries[self.battery])
            extra = [int(b.pv[self.battery]), int(b.ev[self.battery])]
            self.members = np.array([a, self.device, *[m for m in extra if m >= 0]], dtype=np.int64)
            self.role = "storage"
        elif kind == "battery":
            self.battery, self.device, self.members = batteries.index(a), a, np.array([a], dtype=np.int64)
            self.role = "storage"
        elif kind in ("gen", "sgen", "pv", "ev"):
            self.battery, self.device, self.members = -1, a, np.array([a], dtype=np.int64)
            self.role = "ev" if kind == "ev" else "producer"
        else:
            why = "name a battery, a household load with one, an EV, a gen, sgen or PV"
            raise ScenarioError(
                [(where, f"{name!r} is a load without a battery: it has no bid to learn; {why}")]
            )
        if self.role == "storage" and not bidder.batteries_bid:
            raise ScenarioError([(where, "this market design keeps batteries out of the market")])
        self.d_steps = np.flatnonzero(bidder.demand_owner == self.device)
        self.s_steps = np.flatnonzero(bidder.supply_owner == self.device)
        self._ev = int(np.flatnonzero(table.where("ev") == a)[0]) if self.role == "ev" else -1
        self._times_s = fleet.times_s
        p = self.price_max
        if self.role == "storage":
            power = float(b.power_mw[self.battery])
            self.low, self.high = np.zeros(4), np.array([power, p, power, p])
        elif self.role == "producer":
            self.high = np.array([self._offer_max(), p])
            self.low = np.zeros(2)
        else:
            self.low, self.high = np.zeros(2), np.array([float(fleet.evs.charger_mw[self._ev]), p])
        self.reset(0)

    def _offer_max(self) -> float:
        """Largest offer of a producer over the run: a gen's maximum, else its largest forecast output."""
        cap = float(self.bidder._prod_max[list(self.bidder._producers).index(self.device)])
        if np.isfinite(cap):
            return max(cap, 1e-9)
        every = max(1, len(self._times_s) // 4000)
        out = [-self.fleet.baseline(k)[0][self.device] for k in range(0, len(self._times_s), every)]
        return max(float(np.max(out)), 1e-9)

    @property
    def obs_names(self) -> list[str]:
        """Names of the observation's entries."""
        return [*OBS_NAMES_FIXED, *(f"price_lag_{i + 1}" for i in range(self.n_lags)), "forecast"]

    def reset(self, k: int) -> None:
        """Forget past prices; an EV plugged in at ``k`` still needs what uncontrolled charging had left."""
        self._lags = np.zeros(self.n_lags)
        self._need_mwh, self._plugged = 0.0, False
        if self.role == "ev":
            self._plugged = self._plugged_at(k)
            if self._plugged:
                ev, i = self.fleet.evs, self._ev
                elapsed = (self._hour(k) - self._start_h()) % 24.0
                self._need_mwh = float(ev.daily_mwh[i] - min(ev.daily_mwh[i], ev.charger_mw[i] * elapsed))

    def _hour(self, k: int) -> float:
        return float(self._times_s[min(k, len(self._times_s) - 1)] % 86400) / 3600.0

    def _start_h(self) -> float:
        arrival = float(self.fleet.evs.arrival_h[self._ev])
        return float(np.ceil(arrival / self.dt_h - 1e-9) * self.dt_h % 24.0)

    def _plugged_at(self, k: int) -> bool:
        window = (float(self.fleet.evs.departure_h[self._ev]) - self._start_h()) % 24.0
        return bool((self._hour(k) - self._start_h()) % 24.0 < window)

    def limits(self, k: int, bids: Bids) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the action in step ``k`` given the physical state (high <= the Box's high)."""
        low, high = self.low.copy(), self.high.copy()
        if self.role == "storage":
            charge, discharge = self.fleet.batteries.limits(self.dt_h)
            high[0], high[2] = min(high[0], charge[self.battery]), min(high[2], discharge[self.battery])
        elif self.role == "producer":
            s = self.s_steps[0]
            assert bids.supply_min_mw is not None
            high[0] = min(high[0], bids.supply_max_mw[s])
            low[0] = min(float(bids.supply_min_mw[s]), high[0])
        else:
            plugged = self._plugged_at(k)
            need = self._need_mwh if self._plugged else float(self.fleet.evs.daily_mwh[self._ev])
            high[0] = min(high[0], need / self.dt_h) if plugged else 0.0
        return low, np.maximum(high, low)

    def apply(self, k: int, bids: Bids, action: np.ndarray) -> tuple[Bids, np.ndarray]:
        """``bids`` with the agent's steps replaced by ``action`` clipped to its limits; and that action."""
        low, high = self.limits(k, bids)
        a = np.clip(np.nan_to_num(np.asarray(action, dtype=float).reshape(-1)), low, high)
        d_mw, d_price = bids.demand_mw.copy(), bids.demand_price.copy()
        s_max, s_price = bids.supply_max_mw.copy(), bids.supply_price.copy()
        if self.role == "storage":
            d_mw[self.d_steps[0]], d_price[self.d_steps[0]] = a[0], a[1]
            s_max[self.s_steps[0]], s_price[self.s_steps[0]] = a[2], a[3]
        elif self.role == "producer":
            s_max[self.s_steps[0]], s_price[self.s_steps[0]] = a[0], a[1]
        else:
            d_mw[self.d_steps] = 0.0
            d_mw[self.d_steps[0]], d_price[self.d_steps[0]] = a[0], a[1]
        out = replace(bids, demand_mw=d_mw, demand_price=d_price, supply_max_mw=s_max, supply_price=s_price)
        return out, a.astype(np.float32)

    def ordinary_action(self, bids: Bids) -> np.ndarray:
        """The action that reproduces the agent's ordinary bid in ``bids`` (prices clipped to the Box)."""
        d, s = self.d_steps, self.s_steps
        if self.role == "storage":
            a = [
                bids.demand_mw[d[0]],
                bids.demand_price[d[0]],
                bids.supply_max_mw[s[0]],
                bids.supply_price[s[0]],
            ]
        elif self.role == "producer":
            a = [bids.supply_max_mw[s[0]], bids.supply_price[s[0]]]
        else:
            a = [float(bids.demand_mw[d].sum()), self.price_max]
        return np.clip(np.array(a, dtype=float), self.low, self.high).astype(np.float32)

    def settle(self, k: int, award_mw: np.ndarray, price_per_mwh: np.ndarray) -> float:
        """Record step ``k``'s outcome; return an EV's penalty [$] for energy missing at departure, else 0."""
        price = float(price_per_mwh[self.bus_pos]) if len(price_per_mwh) else np.nan
        self._lags = np.r_[np.nan_to_num(price), self._lags[:-1]] if self.n_lags else self._lags
        if self.role != "ev":
            return 0.0
        penalty = 0.0
        plugged_now, plugged_next = self._plugged_at(k), self._plugged_at(k + 1)
        if plugged_now:
            if not self._plugged:  # a new session starts
                self._need_mwh = float(self.fleet.evs.daily_mwh[self._ev])
            self._need_mwh = max(0.0, self._need_mwh - max(float(award_mw[self.device]), 0.0) * self.dt_h)
            if not plugged_next:
                penalty, self._need_mwh = self._need_mwh * self.voll, 0.0
        self._plugged = plugged_now and plugged_next
        return penalty

    def observe(self, k: int) -> np.ndarray:
        """The observation before bidding for step ``k``."""
        t = float(self._times_s[min(k, len(self._times_s) - 1)])
        day, week = 2 * np.pi * (t % 86400) / 86400, 2 * np.pi * ((t / 86400 + 3) % 7) / 7  # 1970-01-01: Thu
        b = self.fleet.batteries
        if self.role == "storage":
            i = self.battery
            state = (b.soc_mwh[i] - 0.0) / b.capacity_mwh[i]
            p0, _ = self.fleet.baseline(min(k, len(self._times_s) - 1))
            others = self.members[self.members != self.device]
            forecast = float(p0[others].sum()) / float(b.power_mw[i])
        elif self.role == "producer":
            p0, _ = self.fleet.baseline(min(k, len(self._times_s) - 1))
            state, forecast = 0.0, -float(p0[self.device]) / float(self.high[0])
        else:
            daily = max(float(self.fleet.evs.daily_mwh[self._ev]), 1e-12)
            plugged = self._plugged_at(k)
            need = (self._need_mwh if self._plugged else daily) if plugged else 0.0
            state, forecast = need / daily, float(plugged)
        lags = np.clip(self._lags / self.price_max, -1.0, 1.0)
        obs = np.r_[np.clip(state, 0.0, 1.0), np.sin(day), np.cos(day), np.sin(week), np.cos(week), lags]
        return np.r_[obs, np.clip(forecast, -10.0, 10.0)].astype(np.float32)

    def obs_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the observation."""
        low = np.r_[0.0, -np.ones(4 + self.n_lags), -10.0].astype(np.float32)
        high = np.r_[1.0, np.ones(4 + self.n_lags), 10.0].astype(np.float32)
        return low, high

    def production_cost(self, award_mw: np.ndarray | None) -> float:
        """A producer's true cost [$] of its dispatch in the interval (its cost data cp1, cp2), else 0."""
        if self.role != "producer" or award_mw is None:
            return 0.0
        i = list(self.bidder._producers).index(self.device)
        p = max(-float(np.nan_to_num(np.asarray(award_mw)[self.device])), 0.0)  # load convention
        return (float(self.bidder._prod_c1[i]) * p + float(self.bidder._prod_c2[i]) * p * p) * self.dt_h

    def reward(self, payment: np.ndarray, penalty: float = 0.0, award_mw: np.ndarray | None = None) -> float:
        """The agent's profit in the interval [$]: what its members are paid, less an EV's penalty and a
        producer's true cost of its dispatch ``award_mw`` (MW, load convention, every agent)."""
        return float(-np.nansum(np.asarray(payment)[self.members])) - penalty - self.production_cost(award_mw)
