"""`lexdesk bench`: latency, throughput and memory of the whole system, on loopback (see runner.py).

The entry point is `tools.bench.runner.main`; this package imports nothing, so that loading the
command (`tools.bench.cli`) stays cheap."""
