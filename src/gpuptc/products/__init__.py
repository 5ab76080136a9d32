"""Calibration products and comparisons.

cp_pipe PTC datasets from gpuptc's tables and back, comparisons with EOTEST and cp_pipe
results, datasets put into a data repository.

Imports: the package root, formats, raws, inputs, fitting.
"""
