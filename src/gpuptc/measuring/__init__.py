"""Measuring flat pairs: ISR and per-amp statistics in batches.

Every flat pair of a sensor through ISR and per-amp statistics, in batches, on the run's
backend; master biases.

Imports: the package root, kernels, formats, raws, inputs.
"""
