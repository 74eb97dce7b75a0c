"""Market clearing: bids and offers, double auction, DC-OPF with LMPs, AC-OPF, baselines."""
