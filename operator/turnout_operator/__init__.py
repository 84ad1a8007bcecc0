"""The turnout kopf operator (see issue: ModelDeployment CRD and blue-green rollout)."""
