"""Decoding raws: camera FITS files into pixels.

e2v and ITL layouts, headers and geometry, readers (fitsio, threads, processes) and RICE_1
decoding on the CPU and the GPU.

Imports: the package root and kernels.
"""
