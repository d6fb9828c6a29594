"""Team membership changes and invitations, with the rule that a team keeps an owner.

Invitation tokens are minted and checked only through console.tokens; the raw
link leaves this module once, in the IssuedInvitation returned at creation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from console.actor import Actor
from console.errors import DomainError
from console.models import Invitation, Membership, Role, Team
from console.tokens import INVITATION, lookup_prefix, new_secret, secret_matches

INVITATION_DAYS = 7


class MembershipError(DomainError):
    """A change that would break a team rule (`last_owner_conflict`) or an invitation
    used or revoked meanwhile (`invitation_conflict`); the message is shown to the user."""


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str = field(repr=False)


def _is_last_owner(membership: Membership) -> bool:
    if membership.role != Role.OWNER:
        return False
    owners = Membership.objects.select_for_update().filter(team=membership.team_id, role=Role.OWNER)
    return owners.count() <= 1


@transaction.atomic
def change_role(membership: Membership, role: str) -> None:
    if role == membership.role:
        return
    if _is_last_owner(membership):
        raise MembershipError(
            "last_owner_conflict", "A team needs an owner: make someone else owner first."
        )
    membership.role = role
    membership.save(update_fields=["role"])


@transaction.atomic
def remove_member(membership: Membership) -> None:
    if _is_last_owner(membership):
        raise MembershipError(
            "last_owner_conflict",
            "The last owner cannot leave: make someone else owner or delete the team.",
        )
    membership.delete()


def create_invitation(
    team: Team, *, role: str, email: str = "", actor: Actor, days: int = INVITATION_DAYS
) -> IssuedInvitation:
    """A pending invitation made by the actor (its person is recorded as the creator)."""
    secret = new_secret(INVITATION)
    invitation = Invitation.objects.create(
        team=team,
        email=email,
        role=role,
        token_prefix=secret.prefix,
        token_digest=secret.digest,
        created_by=actor.user,
        expires_at=timezone.now() + timedelta(days=days),
    )
    return IssuedInvitation(invitation=invitation, token=secret.raw)


def find_invitation(token: str) -> Invitation | None:
    """The pending invitation a raw token names, or None (unknown, expired, revoked, used)."""
    if not token.startswith(INVITATION):
        return None
    for invitation in Invitation.objects.select_related("team").filter(
        token_prefix=lookup_prefix(token)
    ):
        if secret_matches(token, invitation.token_digest) and invitation.status == "pending":
            return invitation
    return None


@transaction.atomic
def accept_invitation(invitation: Invitation, user) -> Membership:
    """Join the team; a user who is already a member keeps the higher of the two roles."""
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.status != "pending":
        raise MembershipError("invitation_conflict", "This invitation is no longer valid.")
    membership, created = Membership.objects.get_or_create(
        team=invitation.team, user=user, defaults={"role": invitation.role}
    )
    if not created and not membership.has_role(invitation.role):
        membership.role = invitation.role
        membership.save(update_fields=["role"])
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def revoke_invitation(invitation: Invitation) -> None:
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
