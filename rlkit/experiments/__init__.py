"""Batches of runs: sweeps, the papermill runner, Dask, tuning."""
