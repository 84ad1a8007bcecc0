"""Condition types, reasons and event reasons: CamelCase constants in one place, as the
Kubernetes API conventions ask, so dashboards, alerts and docs can rely on them."""

from __future__ import annotations

# Condition types
READY = "Ready"
PROGRESSING = "Progressing"
MODEL_RESOLVED = "ModelResolved"
DEGRADED = "Degraded"
EXPOSED = "Exposed"  # spec.ingress or spec.httpRoute: routed from outside the cluster

# ModelResolved reasons
RESOLVED = "Resolved"
REGISTRY_UNAVAILABLE = "RegistryUnavailable"
MODEL_NOT_FOUND = "ModelNotFound"
UNAUTHORIZED = "RegistryUnauthorized"
INVALID_SPEC = "InvalidSpec"

# Progressing reasons
ROLLOUT_STARTED = "RolloutStarted"
WAITING_FOR_PREVIEW = "WaitingForPreview"
SMOKE_TESTING = "SmokeTesting"
WAITING_FOR_PROMOTION = "WaitingForPromotion"
AUTO_PROMOTION_PENDING = "AutoPromotionPending"
SCALING_UP = "ScalingUp"
PRE_PROMOTION_ANALYSIS = "PrePromotionAnalysis"
MEASURING_BASELINE = "MeasuringBaseline"
ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
POST_PROMOTION_ANALYSIS = "PostPromotionAnalysis"
PAUSED = "Paused"
ROLLOUT_COMPLETE = "RolloutComplete"
NO_ROLLOUT = "NoRollout"

# Ready reasons
AVAILABLE = "Available"
ACTIVE_UNAVAILABLE = "ActiveUnavailable"
NOT_DEPLOYED = "NotDeployed"

# Degraded reasons (also the abort reasons written to history and events)
HEALTHY = "Healthy"
ABORTED_BY_USER = "AbortedByUser"
SMOKE_TEST_FAILED = "SmokeTestFailed"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
CRASH_LOOP = "PreviewCrashLooping"
IMAGE_PULL = "PreviewImagePullFailed"
PREVIEW_FAILED = "PreviewFailed"
ROLLED_BACK = "RolledBack"
AUTO_ROLLED_BACK = "AutoRolledBack"
ANALYSIS_FAILED = "AnalysisFailed"

# Event reasons (besides the abort reasons above)
PROMOTED = "Promoted"
SUPERSEDED = "Superseded"
SCALED_DOWN = "ScaledDown"
RETRYING = "Retrying"
PROMOTION_REQUESTED = "PromotionRequested"
ANNOTATION_IGNORED = "AnnotationIgnored"
MODEL_RESOLUTION_FAILED = "ModelResolutionFailed"
VERSION_REJECTED = "VersionRejected"
ANALYSIS_STARTED = "AnalysisStarted"
ANALYSIS_SUCCESSFUL = "AnalysisSuccessful"
RETRAINING_STARTED = "RetrainingStarted"
RETRAINING_SUCCEEDED = "RetrainingSucceeded"
RETRAINING_FAILED = "RetrainingFailed"
RETRAINED_PROMOTED = "RetrainedVersionPromoted"
RETRAINED_KEPT = "RetrainedVersionNotPromoted"
# one per measurement, by its verdict
MEASUREMENT_SUCCESSFUL = "MeasurementSuccessful"
MEASUREMENT_FAILED = "MeasurementFailed"
MEASUREMENT_INCONCLUSIVE = "MeasurementInconclusive"
MEASUREMENT_ERROR = "MeasurementError"

# Exposed reasons
ROUTED = "Routed"
GATEWAY_API_MISSING = "GatewayAPIMissing"
