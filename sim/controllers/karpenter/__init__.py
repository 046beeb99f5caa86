"""Karpenter v1 (NodePools, NodeClaims, provisioning and disruption) as pure functions over plain data."""
