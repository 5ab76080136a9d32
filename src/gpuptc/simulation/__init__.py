"""Simulated sensors with known truth.

Flat pairs and biases in the camera's raw layouts, with cosmic rays and radioactivity.

Imports: the package root, formats, raws, fitting (the PTC models of the truth).
"""
