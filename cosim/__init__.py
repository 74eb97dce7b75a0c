"""Transactive-energy co-simulation platform."""
