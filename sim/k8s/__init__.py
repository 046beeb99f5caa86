"""Manifests: typed views of the Kubernetes objects capsim reads and writes."""
