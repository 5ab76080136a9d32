"""File formats and safe writing.

EOTEST results files, the PTC dataset FITS table, atomic files and folders, staged outputs.

Imports: the package root only.
"""
