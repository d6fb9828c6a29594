from __future__ import annotations

from console.accounts.models.projects import Project
from console.accounts.models.teams import ROLE_RANK, Invitation, Membership, Role, Team
from console.agents.models import (
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
from console.api.models import IdempotencyRecord
from console.audit.models import AuditEvent
from console.code_interpreter.models import (
    CODE_RUN_TERMINAL,
    CodeArtifact,
    CodeContext,
    CodeRun,
    CodeRunStatus,
)
from console.desktop.models import DesktopRecording, DesktopSession, RecordingStatus
from console.jobs.models import Job, JobStatus
from console.keys.models import ApiKey, KeyScope
from console.previews.models import AuthMode, PreviewGrant
from console.sandbox_templates.models import (
    BuildStatus,
    Template,
    TemplateAlias,
    TemplateBuild,
    TemplateBuildLog,
    TemplateClaim,
    TemplateTag,
    Visibility,
)
from console.sandboxes.models.lifecycle import ActorKind, EventStatus, LifecycleEvent, Operation
from console.sandboxes.models.sandboxes import LIVE_STATUSES, Sandbox, SandboxStatus, TimeoutAction
from console.sandboxes.models.snapshots import Snapshot, SnapshotKind
from console.sandboxes.models.uploads import UploadSession, UploadStatus
from console.ssh.models import SshAccess
from console.volumes.models import Volume, VolumeAttachment
from console.warm_pools.models import CheckoutMode, VersionPolicy, WarmPool, WarmPoolState
from console.webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, Webhook

__all__ = [
    "BuildStatus",
    "Template",
    "TemplateAlias",
    "TemplateBuild",
    "TemplateBuildLog",
    "TemplateClaim",
    "TemplateTag",
    "Visibility",
    "SshAccess",
    "DesktopRecording",
    "DesktopSession",
    "RecordingStatus",
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
    "CODE_RUN_TERMINAL",
    "CodeArtifact",
    "CodeContext",
    "CodeRun",
    "CodeRunStatus",
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
