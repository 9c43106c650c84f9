"""Weights providers: where model files come from."""
