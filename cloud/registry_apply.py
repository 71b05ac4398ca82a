"""Applies registry events to the target region (boto3 adapter, no decisions of its own).

Each apply reads the target first and writes only the difference
(merge.py), so a replayed event writes nothing. Certificates and policies
are not in registry events: in `complete` mode they are copied from the
source region when a thing is created or updated (the certificate id is the
SHA-256 of its DER, the same in both regions, so "already there" is one
DescribeCertificate); in `jitr` mode the target registers them itself when
a device first connects (jitr.py) and only the registry is replicated.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

from iotdr.cloud import merge
from iotdr.cloud.errors import ReplicationConflictError
from iotdr.cloud.events import (
    ManagementChange,
    Operation,
    RegistryEvent,
    ThingEvent,
    ThingGroupEvent,
    ThingGroupHierarchyEvent,
    ThingGroupMembershipEvent,
    ThingTypeAssociationEvent,
    ThingTypeEvent,
)
from iotdr.cloud.propagation import Patience, until_detached

if TYPE_CHECKING:
    from types_boto3_iot.client import IoTClient
    from types_boto3_iot.type_defs import ThingGroupPropertiesTypeDef, ThingTypePropertiesTypeDef

log = logging.getLogger(__name__)


class CertificateMode(enum.Enum):
    COMPLETE = "complete"  # copy certificates (RegisterCertificateWithoutCA) and policies
    JITR = "jitr"  # the target registers certificates on first connect


def _missing(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in ("ResourceNotFoundException", "NotFoundException")


# UpdateCertificate accepts these; PENDING_* are AWS's own (UpdateCertificate docs).
_SETTABLE = ("ACTIVE", "INACTIVE", "REVOKED")


def _exists(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ResourceAlreadyExistsException"


class RegistryApplier:
    def __init__(
        self,
        *,
        source: IoTClient,
        target: IoTClient,
        source_region: str,
        target_region: str,
        mode: CertificateMode = CertificateMode.COMPLETE,
        patience: Patience | None = None,
    ) -> None:
        self._patience = patience or Patience()
        self._policies_copied: set[str] = set()
        self._source = source
        self._target = target
        self._source_region = source_region
        self._target_region = target_region
        self._mode = mode

    def apply(self, event: RegistryEvent) -> None:
        match event:
            case ThingEvent():
                self._thing(event)
            case ThingTypeEvent():
                self._thing_type(event)
            case ThingTypeAssociationEvent():
                self._type_association(event)
            case ThingGroupEvent():
                self._group(event)
            case ThingGroupMembershipEvent():
                self._membership(event)
            case ThingGroupHierarchyEvent():
                self._hierarchy(event)
            case ManagementChange():
                self._management(event)

    # things -----------------------------------------------------------------

    def _thing(self, event: ThingEvent) -> None:
        if event.operation is Operation.DELETED:
            self.delete_thing(event.thing_name)
            return
        if event.thing_type_name:
            self.ensure_thing_type(event.thing_type_name)
        self.upsert_thing(event.thing_name, event.thing_type_name, event.attributes)
        if self._mode is CertificateMode.COMPLETE:
            self.copy_principals(event.thing_name)

    def upsert_thing(self, name: str, thing_type: str | None, attributes: dict[str, str]) -> None:
        try:
            current = self._target.describe_thing(thingName=name)
        except ClientError as exc:
            if not _missing(exc):
                raise
            kwargs = {"thingTypeName": thing_type} if thing_type else {}
            try:
                self._target.create_thing(
                    thingName=name, attributePayload={"attributes": attributes}, **kwargs
                )
            except ClientError as create_exc:
                if not _exists(create_exc):  # a concurrent worker created it
                    raise
            return
        patch = merge.attribute_patch(attributes, dict(current.get("attributes", {})))
        type_changed = current.get("thingTypeName") != thing_type
        if not patch and not type_changed:
            return
        if type_changed and thing_type:
            self._target.update_thing(
                thingName=name,
                thingTypeName=thing_type,
                attributePayload={"attributes": patch, "merge": True},
            )
        else:
            self._target.update_thing(
                thingName=name,
                removeThingType=type_changed,
                attributePayload={"attributes": patch, "merge": True},
            )

    def delete_thing(self, name: str) -> None:
        principals = list(_thing_principals(self._target, name))
        for principal in principals:
            self._target.detach_thing_principal(thingName=name, principal=principal)

        def delete() -> None:
            try:
                self._target.delete_thing(thingName=name)
            except ClientError as exc:
                if not _missing(exc):
                    raise

        # The detach is asynchronous in AWS: wait for it rather than failing
        # the event into the error table (propagation.py).
        until_detached(delete, self._patience)

    def copy_principals(
        self,
        thing_name: str,
        *,
        source_principals: list[str] | None = None,
        target_principals: list[str] | None = None,
        exact: bool = False,
    ) -> None:
        """Copies and attaches the thing's certificates with their policies;
        `exact` also detaches from each certificate the policies the source's
        lacks. Principal lists already read can be passed in."""
        if target_principals is None:
            target_principals = list(_thing_principals(self._target, thing_name))
        if source_principals is None:
            source_principals = list(_thing_principals(self._source, thing_name))
        attached = set(target_principals)
        for source_arn in source_principals:
            if ":cert/" not in source_arn:
                continue  # Cognito identities and the like are regional; nothing to copy
            target_arn = self.copy_certificate(source_arn.rsplit("/", 1)[1])
            self.copy_policies(source_arn, target_arn, exact=exact)
            if target_arn not in attached:
                self._target.attach_thing_principal(thingName=thing_name, principal=target_arn)

    def copy_certificate(self, certificate_id: str) -> str:
        try:
            return self._target.describe_certificate(certificateId=certificate_id)[
                "certificateDescription"
            ]["certificateArn"]
        except ClientError as exc:
            if not _missing(exc):
                raise
        description = self._source.describe_certificate(certificateId=certificate_id)
        source = description["certificateDescription"]
        status: Literal["ACTIVE", "INACTIVE"] = (
            "ACTIVE" if source["status"] == "ACTIVE" else "INACTIVE"
        )
        registered = self._target.register_certificate_without_ca(
            certificatePem=source["certificatePem"], status=status
        )
        if source["status"] == "REVOKED":  # registration takes ACTIVE or INACTIVE only
            self._target.update_certificate(certificateId=certificate_id, newStatus="REVOKED")
        return registered["certificateArn"]

    def copy_policies(
        self, source_principal: str, target_principal: str, *, exact: bool = False
    ) -> None:
        present = set(_attached_policies(self._target, target_principal))
        wanted = list(_attached_policies(self._source, source_principal))
        if exact:
            for name in present - set(wanted):
                self._target.detach_policy(policyName=name, target=target_principal)
        for name in wanted:
            self.copy_policy(name)
            if name not in present:
                self._target.attach_policy(policyName=name, target=target_principal)

    def copy_policy(self, name: str) -> None:
        if name in self._policies_copied:
            return  # once per applier: a reconciliation run meets a policy many times
        self._policies_copied.add(name)
        document = merge.rewrite_policy_regions(
            self._source.get_policy(policyName=name)["policyDocument"],
            source_region=self._source_region,
            target_region=self._target_region,
        )
        try:
            current = self._target.get_policy(policyName=name)["policyDocument"]
        except ClientError as exc:
            if not _missing(exc):
                raise
            self._target.create_policy(policyName=name, policyDocument=document)
            return
        if not merge.same_policy(current, document):
            self._new_policy_version(name, document)

    def _new_policy_version(self, name: str, document: str) -> None:
        # An IoT policy keeps at most five versions (CreatePolicyVersion docs):
        # make room by deleting the oldest one that is not the default.
        versions = self._target.list_policy_versions(policyName=name)["policyVersions"]
        if len(versions) >= 5:
            oldest = min(
                (v for v in versions if not v.get("isDefaultVersion")),
                key=lambda v: int(v.get("versionId", "0")),
            )
            self._target.delete_policy_version(policyName=name, policyVersionId=oldest["versionId"])
        self._target.create_policy_version(
            policyName=name, policyDocument=document, setAsDefault=True
        )

    # certificates and policies changed after the thing (management events) --

    def _management(self, change: ManagementChange) -> None:
        """Brings what the call named to the source's *current* state, so a
        late, repeated or reordered event cannot undo a newer change."""
        if change.thing_name:
            if self._mode is CertificateMode.COMPLETE:
                self.sync_thing_principals(change.thing_name)
        elif change.target:
            certificate_id = change.target_certificate_id
            if certificate_id and self._mode is CertificateMode.COMPLETE:
                self.sync_certificate_policies(certificate_id)
        elif change.certificate_id:
            self.sync_certificate_status(change.certificate_id)
        elif change.policy_name:
            self.sync_policy(change.policy_name)

    def sync_thing_principals(self, thing_name: str) -> None:
        """The thing's certificates in the target are those of the source, and
        each certificate's policies those of the source: copies and attaches
        what is new, detaches what is gone."""
        try:
            self._target.describe_thing(thingName=thing_name)
        except ClientError as exc:
            if _missing(exc):
                return  # not replicated yet: its thing event copies the principals
            raise
        if not self._exists_in_source(lambda: self._source.describe_thing(thingName=thing_name)):
            return  # deleted in the source: its thing event deletes it here
        source_principals = list(_thing_principals(self._source, thing_name))
        target_principals = list(_thing_principals(self._target, thing_name))
        wanted = {arn.rsplit("/", 1)[1] for arn in source_principals if ":cert/" in arn}
        for arn in target_principals:
            if ":cert/" in arn and arn.rsplit("/", 1)[1] not in wanted:
                self._target.detach_thing_principal(thingName=thing_name, principal=arn)
        self.copy_principals(
            thing_name,
            source_principals=source_principals,
            target_principals=target_principals,
            exact=True,
        )

    def sync_certificate_status(self, certificate_id: str) -> None:
        """Deactivation and revocation reach the target: a certificate revoked
        in the source must not let a device in after a failover."""
        try:
            source = self._source.describe_certificate(certificateId=certificate_id)
        except ClientError as exc:
            if _missing(exc):
                self.delete_certificate(certificate_id)
                return
            raise
        status = source["certificateDescription"]["status"]
        try:
            current = self._target.describe_certificate(certificateId=certificate_id)
        except ClientError as exc:
            if not _missing(exc):
                raise
            if status in ("REVOKED", "INACTIVE"):
                # Not here yet (jitr mode, or never attached): register it
                # unusable, so neither a later copy nor JITR can activate it.
                self.copy_certificate(certificate_id)
                self._target.update_certificate(certificateId=certificate_id, newStatus=status)
            return
        if current["certificateDescription"]["status"] != status and status in _SETTABLE:
            self._target.update_certificate(certificateId=certificate_id, newStatus=status)

    def sync_certificate_policies(self, certificate_id: str) -> None:
        """The certificate's policies in the target are those of the source."""
        try:
            target_arn = self._target.describe_certificate(certificateId=certificate_id)[
                "certificateDescription"
            ]["certificateArn"]
            source_arn = self._source.describe_certificate(certificateId=certificate_id)[
                "certificateDescription"
            ]["certificateArn"]
        except ClientError as exc:
            if _missing(exc):
                return  # the thing that uses it copies it, with its policies
            raise
        self.copy_policies(source_arn, target_arn, exact=True)

    def sync_policy(self, name: str) -> None:
        """A policy's default version; deleted in the target once deleted in the source."""
        if self._exists_in_source(lambda: self._source.get_policy(policyName=name)):
            try:
                self._target.get_policy(policyName=name)
            except ClientError as exc:
                if _missing(exc):
                    return  # attached nowhere here yet: copied when it is
                raise
            self.copy_policy(name)
            return
        try:
            versions = self._target.list_policy_versions(policyName=name)["policyVersions"]
        except ClientError as exc:
            if _missing(exc):
                return
            raise
        # DeletePolicy refuses a policy with versions other than the default.
        for version in versions:
            if not version.get("isDefaultVersion"):
                self._target.delete_policy_version(
                    policyName=name, policyVersionId=version["versionId"]
                )
        self._target.delete_policy(policyName=name)

    def delete_certificate(self, certificate_id: str) -> None:
        """Deleted in the source: deactivate, detach and delete it here."""
        try:
            arn = self._target.describe_certificate(certificateId=certificate_id)[
                "certificateDescription"
            ]["certificateArn"]
        except ClientError as exc:
            if _missing(exc):
                return
            raise
        for name in list(_attached_policies(self._target, arn)):
            self._target.detach_policy(policyName=name, target=arn)
        for page in self._target.get_paginator("list_principal_things").paginate(principal=arn):
            for thing in page.get("things", []):
                self._target.detach_thing_principal(thingName=thing, principal=arn)
        # A certificate must not be ACTIVE to be deleted (DeleteCertificate docs).
        self._target.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
        until_detached(
            lambda: self._target.delete_certificate(certificateId=certificate_id), self._patience
        )

    @staticmethod
    def _exists_in_source(describe: Callable[[], object]) -> bool:
        try:
            describe()
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    # thing types ------------------------------------------------------------

    def _thing_type(self, event: ThingTypeEvent) -> None:
        name = event.thing_type_name
        if event.operation is Operation.DELETED:
            try:
                # AWS: a type can be deleted only five minutes after its
                # deprecation; until then this fails and the retry runner
                # applies the event again later.
                self._deprecate(name, undo=False)
                self._target.delete_thing_type(thingTypeName=name)
            except ClientError as exc:
                if not _missing(exc):
                    raise
            return
        properties: ThingTypePropertiesTypeDef = {}
        if event.description:
            properties["thingTypeDescription"] = event.description
        if event.searchable_attributes:
            properties["searchableAttributes"] = list(event.searchable_attributes)
        self._create_thing_type(name, properties)
        self._deprecate(name, undo=not event.is_deprecated)

    def ensure_thing_type(self, name: str) -> None:
        try:
            self._target.describe_thing_type(thingTypeName=name)
            return
        except ClientError as exc:
            if not _missing(exc):
                raise
        source = self._source.describe_thing_type(thingTypeName=name).get("thingTypeProperties", {})
        properties: ThingTypePropertiesTypeDef = {}
        if "thingTypeDescription" in source:
            properties["thingTypeDescription"] = source["thingTypeDescription"]
        if "searchableAttributes" in source:
            properties["searchableAttributes"] = source["searchableAttributes"]
        self._create_thing_type(name, properties)

    def _create_thing_type(self, name: str, properties: ThingTypePropertiesTypeDef) -> None:
        try:
            self._target.create_thing_type(thingTypeName=name, thingTypeProperties=properties)
        except ClientError as exc:
            if not _exists(exc):
                raise

    def _deprecate(self, name: str, *, undo: bool) -> None:
        metadata = self._target.describe_thing_type(thingTypeName=name).get("thingTypeMetadata", {})
        if bool(metadata.get("deprecated")) == (not undo):
            return
        self._target.deprecate_thing_type(thingTypeName=name, undoDeprecate=undo)

    def _type_association(self, event: ThingTypeAssociationEvent) -> None:
        current = self._target.describe_thing(thingName=event.thing_name).get("thingTypeName")
        if event.operation in (Operation.ADDED, Operation.CREATED):
            if current != event.thing_type_name:
                self.ensure_thing_type(event.thing_type_name)
                self._target.update_thing(
                    thingName=event.thing_name, thingTypeName=event.thing_type_name
                )
        elif current == event.thing_type_name:
            self._target.update_thing(thingName=event.thing_name, removeThingType=True)

    # thing groups -----------------------------------------------------------

    def _group(self, event: ThingGroupEvent) -> None:
        if event.operation is Operation.DELETED:
            self._target.delete_thing_group(thingGroupName=event.group_name)  # idempotent in AWS
            return
        self.upsert_group(
            event.group_name, event.parent_group_name, event.description, event.attributes
        )

    def upsert_group(
        self, name: str, parent: str | None, description: str | None, attributes: dict[str, str]
    ) -> None:
        try:
            current = self._target.describe_thing_group(thingGroupName=name)
        except ClientError as exc:
            if not _missing(exc):
                raise
            if parent:
                self.ensure_group(parent)
            properties: ThingGroupPropertiesTypeDef = {
                "attributePayload": {"attributes": attributes}
            }
            if description:
                properties["thingGroupDescription"] = description
            if parent:
                self._target.create_thing_group(
                    thingGroupName=name, thingGroupProperties=properties, parentGroupName=parent
                )
            else:
                self._target.create_thing_group(
                    thingGroupName=name, thingGroupProperties=properties
                )
            return
        current_parent = current.get("thingGroupMetadata", {}).get("parentGroupName")
        if parent and current_parent != parent:
            raise ReplicationConflictError(
                f"thing group {name} has parent {current_parent} in {self._target_region}, "
                f"not {parent}: AWS IoT cannot move a group to another parent"
            )
        props = current.get("thingGroupProperties", {})
        patch = merge.attribute_patch(
            attributes, dict(props.get("attributePayload", {}).get("attributes", {}))
        )
        if patch or (description or None) != (props.get("thingGroupDescription") or None):
            self._target.update_thing_group(
                thingGroupName=name,
                thingGroupProperties={
                    "thingGroupDescription": description or "",
                    "attributePayload": {"attributes": patch, "merge": True},
                },
            )

    def ensure_group(self, name: str) -> None:
        try:
            self._target.describe_thing_group(thingGroupName=name)
        except ClientError as exc:
            if not _missing(exc):
                raise
            source = self._source.describe_thing_group(thingGroupName=name)
            props = source.get("thingGroupProperties", {})
            self.upsert_group(
                name,
                source.get("thingGroupMetadata", {}).get("parentGroupName"),
                props.get("thingGroupDescription"),
                dict(props.get("attributePayload", {}).get("attributes", {})),
            )

    def _membership(self, event: ThingGroupMembershipEvent) -> None:
        groups = set(_groups_of_thing(self._target, event.thing_name))
        if event.operation is Operation.ADDED:
            if event.group_name not in groups:
                self.ensure_group(event.group_name)
                self._target.add_thing_to_thing_group(
                    thingGroupName=event.group_name, thingName=event.thing_name
                )
        elif event.group_name in groups:
            self._target.remove_thing_from_thing_group(
                thingGroupName=event.group_name, thingName=event.thing_name
            )

    def _hierarchy(self, event: ThingGroupHierarchyEvent) -> None:
        if event.operation is Operation.REMOVED:
            # A child leaves its parent only by being deleted; its own
            # thing-group DELETED event replicates that.
            return
        self.ensure_group(event.parent_group_name)
        try:
            current = self._target.describe_thing_group(thingGroupName=event.child_group_name)
        except ClientError as exc:
            if not _missing(exc):
                raise
            self.upsert_group(event.child_group_name, event.parent_group_name, None, {})
            return
        parent = current.get("thingGroupMetadata", {}).get("parentGroupName")
        if parent != event.parent_group_name:
            raise ReplicationConflictError(
                f"thing group {event.child_group_name} has parent {parent} in "
                f"{self._target_region}, not {event.parent_group_name}"
            )


# paginated reads (every list call pages: the reference read one page of 10) ---


def _thing_principals(iot: IoTClient, thing_name: str) -> Iterator[str]:
    try:
        for page in iot.get_paginator("list_thing_principals").paginate(thingName=thing_name):
            yield from page.get("principals", [])
    except ClientError as exc:
        if not _missing(exc):
            raise


def _attached_policies(iot: IoTClient, target: str) -> Iterator[str]:
    for page in iot.get_paginator("list_attached_policies").paginate(target=target):
        for policy in page.get("policies", []):
            yield policy["policyName"]


def _groups_of_thing(iot: IoTClient, thing_name: str) -> Iterator[str]:
    for page in iot.get_paginator("list_thing_groups_for_thing").paginate(thingName=thing_name):
        for group in page.get("thingGroups", []):
            yield group["groupName"]
