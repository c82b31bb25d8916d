"""Ray Serve applications over the published lake snapshots and the MLflow champion."""
