"""The turnout kopf operator: turns a ModelDeployment into a served model of the MLflow registry
and moves it between registry versions blue-green."""
