"""The simulated metrics pipeline: series as Prometheus would scrape them, and PromQL over them."""
