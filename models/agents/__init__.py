"""Prosumer agents: households, generators, rooftop PV, home batteries and EVs."""
