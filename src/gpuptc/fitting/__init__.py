"""Fitting PTCs: models, point selection, full covariance.

The PTC models per amp (eq. 16 and the notebook's fits), Astier's full covariance model
(eq. 20), the choice of the points each fit uses, and the optimizer checks they share.

Imports: the package root (schema, config, settings, backend) and kernels.
"""
