"""What a service is asked to do (traffic) and how it does it (service model)."""
