"""The harness: datasets, collection, runs, evaluation, aggregation and plots."""

from harness.numerics import pin as _pin_numerics

_pin_numerics()  # before anything imports numpy: OpenBLAS reads its kernel choice once, at load
