"""The data plane: requests through per-pod queues, in fluid or per-request fidelity."""
