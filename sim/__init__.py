"""capsim: simulate KEDA/HPA and Karpenter autoscaling before the config reaches the cluster."""

__version__ = "0.1.0"
