"""Benchmarks: scripts run by hand against a real server; results go to bench/results/."""
