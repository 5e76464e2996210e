"""Benchmarks: small scripts that print `name=value` figures, the headline figure last."""
