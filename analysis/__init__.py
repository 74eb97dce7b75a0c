"""Figures and reports; reads HDF5 only."""
