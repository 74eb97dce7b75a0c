"""Simulator models: one sub-package per simulator, each a pure core plus a mosaik adapter."""
