"""The simulator: many cores on one simulated network, for measurements.

Only the simulator and the benchmarks use this package; the node never does.
"""
