"""Differential privacy: private release of aggregate metered data per interval, with a budget accountant."""
