"""Local conda channel factory: every conda package the tests, examples and benchmarks use is
built here (no conda channel is reachable from our machines)."""
