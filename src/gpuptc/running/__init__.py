"""Running: the per-sensor pipeline, the job, schedulers, the store.

The stages of one sensor, the stages of a run, the schedulers (in process, Dask), the store
of finished sensors, and refitting PTC products.

Imports: every layer below it.
"""
