"""Finding inputs: raws by header, Butler queries, remote files.

The manifest of raws found by header and paired per sensor, the raws a Butler query
selects, remote files fetched ahead of their reading.

Imports: the package root, formats, raws.
"""
