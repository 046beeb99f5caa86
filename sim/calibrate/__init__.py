"""Calibration from Prometheus history, and backtests of the simulator against it.

`calibration.calibrate` turns a service's history (a Prometheus server via
`client.PrometheusSource`, or a recorded OpenMetrics file via
`source.FileSource`) into a workload model (`model`); `backtest.backtest`
replays the recorded traffic through a scenario and scores the simulator
against what the cluster did.
"""
