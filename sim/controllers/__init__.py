"""Faithful, pure models of the real controllers (HPA, KEDA, later Karpenter).

Nothing here imports SimPy: the engine calls these functions at the instants
the real controllers would run, so each can be tested against upstream cases
on its own.
"""
