"""The demo's application: a booking site's schema, data and client driver (`booking`).

Imported only by `pg-tuner demo`, the benchmarks in `bench/` and their tests; the product's
modules never import it.
"""
