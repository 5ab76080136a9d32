"""Reading and writing LSST camera files: raw exposures, ingest, EOTEST results."""
