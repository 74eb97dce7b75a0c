"""AC grid: pandapower network model and a fast Newton-Raphson power flow on it."""
