"""The harness: datasets, collection, runs, evaluation, aggregation and plots."""
