from __future__ import annotations

from console.models.agents import (
    AgentArtifact,
    AgentDeployment,
    AgentLogEvent,
    AgentRun,
    AgentService,
    AgentVersion,
    ArtifactStatus,
    CachePolicy,
    DeploymentMode,
    DeploymentStatus,
    LogLevel,
    RunStatus,
    ServiceStatus,
    VersionStatus,
)
from console.models.audit import AuditEvent
from console.models.idempotency import IdempotencyRecord
from console.models.jobs import Job, JobStatus
from console.models.keys import ApiKey, KeyScope
from console.models.lifecycle import ActorKind, EventStatus, LifecycleEvent, Operation
from console.models.previews import AuthMode, PreviewGrant
from console.models.projects import Project
from console.models.sandboxes import LIVE_STATUSES, Sandbox, SandboxStatus, TimeoutAction
from console.models.snapshots import Snapshot, SnapshotKind
from console.models.teams import ROLE_RANK, Invitation, Membership, Role, Team
from console.models.uploads import UploadSession, UploadStatus
from console.models.volumes import Volume, VolumeAttachment
from console.models.webhooks import Delivery, DeliveryAttempt, DeliveryStatus, Webhook
from console.warm_pools.models import CheckoutMode, VersionPolicy, WarmPool, WarmPoolState

__all__ = [
    "ArtifactStatus",
    "VersionStatus",
    "RunStatus",
    "ServiceStatus",
    "DeploymentStatus",
    "DeploymentMode",
    "CachePolicy",
    "LogLevel",
    "AgentArtifact",
    "AgentDeployment",
    "AgentLogEvent",
    "AgentRun",
    "AgentService",
    "AgentVersion",
    "ActorKind",
    "ApiKey",
    "AuditEvent",
    "AuthMode",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "EventStatus",
    "IdempotencyRecord",
    "Job",
    "JobStatus",
    "Invitation",
    "KeyScope",
    "LIVE_STATUSES",
    "LifecycleEvent",
    "Membership",
    "Operation",
    "PreviewGrant",
    "Project",
    "ROLE_RANK",
    "Role",
    "Sandbox",
    "SandboxStatus",
    "Snapshot",
    "SnapshotKind",
    "Team",
    "TimeoutAction",
    "UploadSession",
    "UploadStatus",
    "Webhook",
    "Volume",
    "VolumeAttachment",
    "CheckoutMode",
    "VersionPolicy",
    "WarmPool",
    "WarmPoolState",
]
