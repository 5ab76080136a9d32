"""Small helpers that know nothing of gpuptc.

Stage timing, progress lines, process pools.

Imports: the standard library and third-party packages only.
"""
