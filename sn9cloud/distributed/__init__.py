"""Ray execution of the pipeline: window jobs of one pair on the cluster (`RayExecutor`),
many pairs at once (`run_batch`), and the cluster connection that both share."""
