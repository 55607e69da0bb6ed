"""The service: event triggers (SQS, STAC API polling), state with leases, the stac-task
entry, structured logs and metrics. A thin layer over the pipeline."""
