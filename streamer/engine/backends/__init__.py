"""Backends run a model file on a device; each imports its library only when instantiated."""
