"""Equity accounting: per-agent bills, revenues and surplus against a tariff, Gini, Lorenz, redistribution."""
