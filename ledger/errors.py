"""The ledger's error tree: one stable ``code`` per leaf, grouped by meaning.

Every refusal the ledger can make is a leaf of :class:`LedgerError`. The HTTP layer maps the
category (the first-level subclass) to a status in one table (``api/problems.py``); the CLI
maps it to an exit code. ``code`` values are part of the wire contract (PROTOCOL.md §6) and
never change once released.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "LedgerError",
    # categories
    "MalformedInput",
    "Unauthenticated",
    "Forbidden",
    "NotFound",
    "Conflict",
    "RuleViolation",
    "TooLarge",
    "UnsupportedMedia",
    "Throttled",
    "Unavailable",
    "IntegrityFailure",
    "SignatureRejected",
    # malformed input
    "MalformedJson",
    "DuplicateKey",
    "InvalidNumber",
    "InvalidString",
    "TooDeep",
    "InvalidField",
    "MissingField",
    "UnknownField",
    "UnknownType",
    "WrongLedger",
    "InvalidKey",
    "WeakKey",
    "InvalidSignatureEncoding",
    "InvalidProofRequest",
    "InvalidPage",
    "InvalidExportRange",
    "InvalidAnalyticsQuery",
    "PersonalData",
    "MalformedNote",
    "MalformedProof",
    "MalformedBundle",
    "MalformedCertificate",
    "InvalidEpcisDocument",
    "InvalidEpcisMap",
    # authentication / authorisation of signatures
    "InvalidSignature",
    "UnknownKey",
    "UnknownSigner",
    "KeyRevoked",
    "RoleNotAllowed",
    "QuorumNotMet",
    "MissingSignature",
    "AuditorsOnly",
    # not found
    "EntryNotFound",
    "BlockNotFound",
    "ParticipantNotFound",
    "LotNotFound",
    "RouteNotFound",
    "MethodNotAllowed",
    # conflicts
    "NonceReused",
    "ParticipantExists",
    "KeyInUse",
    "LedgerExists",
    # rule violations
    "GenesisRequired",
    "TimeInFuture",
    "InvalidPolicy",
    "ParticipantReserved",
    "KeyNotActive",
    # size and media
    "PayloadTooLarge",
    "BatchTooLarge",
    "HistoryTooLarge",
    "UnsupportedMediaType",
    "UnsupportedEncoding",
    # throttling
    "RateLimited",
    # service
    "NotInitialised",
    "UnsafeConfiguration",
    "SealTimeout",
    "ParquetUnavailable",
    "ReadOnlyNode",
    "StorageDamaged",
    # verification failures (raised by verify/audit; never by a request)
    "InvalidProof",
    "InvalidCheckpoint",
    "ChainBroken",
    "InvalidNoteSignature",
    "NoTrustedSignature",
    "OriginMismatch",
    "SplitView",
    "Rollback",
    "WrongTreeSize",
    "WrongSubject",
    "InvalidCertificate",
    # local configuration
    "ConfigurationError",
    "UnsafeKeyFile",
    "InvalidKeyFile",
    "InvalidSnapshot",
    "NotCustodian",
    "LotInTransit",
    "LotConsumed",
    "DuplicateLot",
    "UnknownLot",
    "UnknownHandoff",
    "HandoffNotOpen",
    "NotRecipient",
    "UnknownParticipant",
    "SameParty",
    "ContractExists",
    "UnknownContract",
    "ContractNotOpen",
    "ContractPartiesMismatch",
    "CurrencyMismatch",
    "MissingCosignature",
    "UnknownPayment",
    "PaymentConfirmed",
    "UnknownSubject",
    "NotAParty",
    # witnessing (c2sp.org/tlog-witness, tlog-cosignature, tlog-policy)
    "MalformedWitnessRequest",
    "UnknownLog",
    "UntrustedCheckpoint",
    "OldSizeMismatch",
    "ConflictingCheckpoint",
    "InconsistentCheckpoint",
    "CheckpointNotWitnessed",
    "InvalidWitnessPolicy",
    # webhooks and the members' dashboard
    "InvalidWebhook",
    "WebhookUrlRefused",
    "WebhookNotFound",
    "TooManyWebhooks",
    "DashboardTokenInvalid",
    "DashboardTokenExpired",
    "WebhookSecretUnreadable",
    "all_error_classes",
    "error_for_code",
]


class LedgerError(Exception):
    """Base of every refusal. ``code`` is stable; ``detail`` tells the caller what to do.

    ``facts`` carries machine-readable context (field names, ids, sizes) that the HTTP layer
    adds to the problem document as extension members.
    """

    code: ClassVar[str] = "ledger_error"
    title: ClassVar[str] = "Ledger error"

    def __init__(self, detail: str, **facts: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.facts = facts

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


# --- categories: each maps to one HTTP status in api/problems.py -------------------------


class MalformedInput(LedgerError):
    code = "malformed_input"
    title = "Malformed input"


class Unauthenticated(LedgerError):
    code = "unauthenticated"
    title = "Authentication failed"


class Forbidden(LedgerError):
    code = "forbidden"
    title = "Not allowed"


class NotFound(LedgerError):
    code = "not_found"
    title = "Not found"


class Conflict(LedgerError):
    code = "conflict"
    title = "Conflict with the ledger"


class RuleViolation(LedgerError):
    code = "rule_violation"
    title = "Ledger rule violated"


class TooLarge(LedgerError):
    code = "too_large"
    title = "Too large"


class UnsupportedMedia(LedgerError):
    code = "unsupported_media"
    title = "Unsupported media"


class Throttled(LedgerError):
    """Too many requests from one member or address: nothing about the request is wrong."""

    code = "throttled"
    title = "Too many requests"


class Unavailable(LedgerError):
    code = "unavailable"
    title = "Service unavailable"


class IntegrityFailure(LedgerError):
    """The stored or presented evidence does not verify: tampering or a broken proof."""

    code = "integrity_failure"
    title = "Verification failed"


# --- malformed input --------------------------------------------------------------------


class MalformedJson(MalformedInput):
    code = "malformed_json"
    title = "Malformed JSON"


class DuplicateKey(MalformedInput):
    code = "duplicate_key"
    title = "Duplicate JSON object key"


class InvalidNumber(MalformedInput):
    code = "invalid_number"
    title = "Number outside I-JSON"


class InvalidString(MalformedInput):
    code = "invalid_string"
    title = "String is not valid Unicode"


class TooDeep(MalformedInput):
    code = "too_deep"
    title = "JSON nested too deeply"


class InvalidField(MalformedInput):
    code = "invalid_field"
    title = "Invalid field"


class MissingField(MalformedInput):
    code = "missing_field"
    title = "Missing field"


class UnknownField(MalformedInput):
    code = "unknown_field"
    title = "Unknown field"


class UnknownType(MalformedInput):
    code = "unknown_type"
    title = "Unknown entry type"


class WrongLedger(MalformedInput):
    code = "wrong_ledger"
    title = "Entry is for another ledger"


class InvalidKey(MalformedInput):
    code = "invalid_key"
    title = "Invalid public key"


class WeakKey(MalformedInput):
    code = "weak_key"
    title = "Public key refused"


class InvalidSignatureEncoding(MalformedInput):
    code = "invalid_signature_encoding"
    title = "Signature is not 64 bytes of base64"


class InvalidProofRequest(MalformedInput):
    code = "invalid_proof_request"
    title = "Proof parameters out of range"


class InvalidPage(MalformedInput):
    code = "invalid_page"
    title = "Invalid paging parameters"


class InvalidExportRange(MalformedInput):
    code = "invalid_export_range"
    title = "Export range out of range"


class InvalidAnalyticsQuery(MalformedInput):
    code = "invalid_analytics_query"
    title = "Invalid analytics query"


class PersonalData(MalformedInput):
    code = "personal_data"
    title = "Personal data refused"


class MalformedNote(MalformedInput):
    code = "malformed_note"
    title = "Malformed signed note"


class MalformedProof(MalformedInput):
    code = "malformed_proof"
    title = "Malformed proof"


class MalformedBundle(MalformedInput):
    code = "malformed_bundle"
    title = "Malformed audit bundle"


class MalformedCertificate(MalformedInput):
    code = "malformed_certificate"
    title = "Malformed origin certificate"


class InvalidEpcisDocument(MalformedInput):
    """Not an EPCIS 2.0 document that GS1's JSON Schema accepts (``filiera epcis import``)."""

    code = "invalid_epcis_document"
    title = "Not a valid EPCIS 2.0 document"


class InvalidEpcisMap(MalformedInput):
    """An import map (``filiera epcis import --map``) that does not say which member or lot
    a GS1 identifier is."""

    code = "invalid_epcis_map"
    title = "Not a valid EPCIS import map"


# --- signatures and authorisation ------------------------------------------------------


class SignatureRejected(LedgerError):
    """An entry's signature cannot be accepted: it does not verify or names no known key."""

    code = "signature_rejected"
    title = "Signature rejected"


class InvalidSignature(SignatureRejected):
    code = "invalid_signature"
    title = "Signature does not verify"


class UnknownKey(SignatureRejected):
    code = "unknown_key"
    title = "Unknown key"


class UnknownSigner(SignatureRejected):
    code = "unknown_signer"
    title = "Unknown signer"


class KeyRevoked(Forbidden):
    code = "key_revoked"
    title = "Key revoked"


class KeyNotActive(Forbidden):
    code = "key_not_active"
    title = "Key not active"


class RoleNotAllowed(Forbidden):
    code = "role_not_allowed"
    title = "Role does not allow this entry type"


class QuorumNotMet(Forbidden):
    code = "quorum_not_met"
    title = "Admin quorum not met"


class MissingSignature(Forbidden):
    code = "missing_signature"
    title = "A required signature is missing"


class AuditorsOnly(Forbidden):
    """A read that shows every entry of the log (the export) to someone who may not see them all."""

    code = "auditors_only"
    title = "Only auditors and admins may do this"


# --- not found ---------------------------------------------------------------------------


class EntryNotFound(NotFound):
    code = "entry_not_found"
    title = "Entry not found"


class BlockNotFound(NotFound):
    code = "block_not_found"
    title = "Block not found"


class ParticipantNotFound(NotFound):
    code = "participant_not_found"
    title = "Participant not found"


class LotNotFound(NotFound):
    code = "lot_not_found"
    title = "Lot not found"


class RouteNotFound(NotFound):
    code = "route_not_found"
    title = "No such resource"


class MethodNotAllowed(LedgerError):
    code = "method_not_allowed"
    title = "Method not allowed"


# --- conflicts with the log --------------------------------------------------------------


class NonceReused(Conflict):
    code = "nonce_reused"
    title = "Nonce already used with a different entry"


class ParticipantExists(Conflict):
    code = "participant_exists"
    title = "Participant id already registered"


class KeyInUse(Conflict):
    code = "key_in_use"
    title = "Key already registered"


class LedgerExists(Conflict):
    code = "ledger_exists"
    title = "Ledger already initialised"


# --- rule violations ---------------------------------------------------------------------


class GenesisRequired(RuleViolation):
    code = "genesis_misplaced"
    title = "Genesis entry misplaced"


class TimeInFuture(RuleViolation):
    code = "time_in_future"
    title = "Entry time is in the future"


class InvalidPolicy(RuleViolation):
    code = "invalid_policy"
    title = "Invalid ledger policy"


class ParticipantReserved(RuleViolation):
    code = "participant_reserved"
    title = "Participant id reserved"


# --- size and media ----------------------------------------------------------------------


class PayloadTooLarge(TooLarge):
    code = "payload_too_large"
    title = "Request body too large"


class BatchTooLarge(TooLarge):
    code = "batch_too_large"
    title = "Too many entries in one batch"


class HistoryTooLarge(TooLarge):
    """A lot's history spans more lots or entries than one document may hold."""

    code = "history_too_large"
    title = "Lot history too large for one document"


class UnsupportedMediaType(UnsupportedMedia):
    code = "unsupported_media_type"
    title = "Unsupported content type"


class UnsupportedEncoding(UnsupportedMedia):
    code = "unsupported_content_encoding"
    title = "Unsupported content encoding"


# --- service -----------------------------------------------------------------------------


class NotInitialised(Unavailable):
    code = "not_initialised"
    title = "Ledger not initialised"


class UnsafeConfiguration(Unavailable):
    code = "unsafe_configuration"
    title = "Unsafe database configuration"


class RateLimited(Throttled):
    code = "rate_limited"
    title = "Rate limit exceeded"


class SealTimeout(Unavailable):
    code = "seal_timeout"
    title = "Entry accepted but not yet sealed"


class ParquetUnavailable(Unavailable):
    code = "parquet_unavailable"
    title = "Parquet export not installed"


class StorageDamaged(Unavailable):
    """The stored ledger cannot be read back: a row is missing or holds a value of the wrong
    kind, which only an edit behind the service's back (or a damaged disk) leaves. The detail
    sends the operator to ``filiera verify``; it never names a file or a database URL."""

    code = "storage_damaged"
    title = "Stored ledger is damaged"


class ReadOnlyNode(Unavailable):
    code = "read_only_node"
    title = "Read-only node"


# --- verification ------------------------------------------------------------------------


class InvalidProof(IntegrityFailure):
    code = "invalid_proof"
    title = "Proof does not verify"


class InvalidCheckpoint(IntegrityFailure):
    code = "invalid_checkpoint"
    title = "Checkpoint does not verify"


class ChainBroken(IntegrityFailure):
    code = "chain_broken"
    title = "Ledger chain does not verify"


class InvalidNoteSignature(IntegrityFailure):
    code = "invalid_note_signature"
    title = "A trusted key's note signature does not verify"


class NoTrustedSignature(IntegrityFailure):
    code = "no_trusted_signature"
    title = "No signature by a trusted key"


class OriginMismatch(IntegrityFailure):
    code = "origin_mismatch"
    title = "Checkpoint is for another log"


class SplitView(IntegrityFailure):
    """Two checkpoints signed by the ledger key describe histories that cannot both be true."""

    code = "split_view"
    title = "Two signed checkpoints show different histories"


class Rollback(IntegrityFailure):
    """A checkpoint signed by the ledger key is smaller than one already verified."""

    code = "rollback"
    title = "Signed checkpoint is older than one already seen"


class WrongTreeSize(InvalidProof):
    """An inclusion proof presented with a checkpoint of a tree size it was not made for."""

    code = "wrong_tree_size"
    title = "Proof made for another tree size"


class WrongSubject(IntegrityFailure):
    """Evidence that verifies, but about another entry or lot than the one asked for."""

    code = "wrong_subject"
    title = "Evidence is about something else"


class InvalidCertificate(IntegrityFailure):
    """An origin certificate that does not verify; ``reason`` says which part failed."""

    code = "invalid_certificate"
    title = "Origin certificate does not verify"


# --- local configuration (CLI and start-up; never caused by a request) -------------------


class ConfigurationError(LedgerError):
    code = "configuration_error"
    title = "Configuration error"


class UnsafeKeyFile(ConfigurationError):
    code = "unsafe_key_file"
    title = "Key file readable by others"


class InvalidKeyFile(ConfigurationError):
    code = "invalid_key_file"
    title = "Key file is not a valid Filiera key file"


class InvalidSnapshot(ConfigurationError):
    code = "invalid_snapshot"
    title = "Unusable audit state snapshot"


# --- supply chain and commerce (PROTOCOL §4) --------------------------------------------


class NotCustodian(RuleViolation):
    code = "not_custodian"
    title = "Not the lot's custodian"


class LotInTransit(RuleViolation):
    code = "lot_in_transit"
    title = "Lot is in transit"


class LotConsumed(RuleViolation):
    code = "lot_consumed"
    title = "Lot was consumed by a transformation"


class DuplicateLot(Conflict):
    code = "duplicate_lot"
    title = "Lot id already used"


class UnknownLot(RuleViolation):
    code = "unknown_lot"
    title = "Unknown lot"


class UnknownHandoff(RuleViolation):
    code = "unknown_handoff"
    title = "Unknown handoff"


class HandoffNotOpen(RuleViolation):
    code = "handoff_not_open"
    title = "Handoff already received or rejected"


class NotRecipient(Forbidden):
    code = "not_recipient"
    title = "Not the handoff's recipient"


class UnknownParticipant(RuleViolation):
    code = "unknown_participant"
    title = "Entry names an unregistered participant"


class SameParty(RuleViolation):
    code = "same_party"
    title = "Both sides are the same participant"


class ContractExists(Conflict):
    code = "contract_exists"
    title = "Contract id already used"


class UnknownContract(RuleViolation):
    code = "unknown_contract"
    title = "Unknown contract"


class ContractNotOpen(RuleViolation):
    code = "contract_not_open"
    title = "Contract is closed"


class ContractPartiesMismatch(RuleViolation):
    code = "contract_parties_mismatch"
    title = "Parties do not match the contract"


class CurrencyMismatch(RuleViolation):
    code = "currency_mismatch"
    title = "Currency differs from the contract's"


class MissingCosignature(Forbidden):
    code = "missing_cosignature"
    title = "A party's co-signature is missing"


class UnknownPayment(RuleViolation):
    code = "unknown_payment"
    title = "Unknown payment"


class PaymentConfirmed(Conflict):
    code = "payment_already_confirmed"
    title = "Payment already confirmed"


class UnknownSubject(RuleViolation):
    code = "unknown_subject"
    title = "Attestation subject not in the ledger"


class NotAParty(Forbidden):
    code = "not_a_party"
    title = "Signer is not a party to this entry"


# --- witnessing: c2sp.org/tlog-witness (the witness's answers) and the ledger's policy ------


class MalformedWitnessRequest(MalformedInput):
    code = "malformed_witness_request"
    title = "Malformed add-checkpoint request"


class UnknownLog(NotFound):
    code = "unknown_log"
    title = "Witness does not know this log"


class UntrustedCheckpoint(Forbidden):
    code = "untrusted_checkpoint"
    title = "Checkpoint not signed by the log's known key"


class OldSizeMismatch(Conflict):
    code = "old_size_mismatch"
    title = "Old size is not the witness's latest size"


class ConflictingCheckpoint(Conflict):
    code = "conflicting_checkpoint"
    title = "Checkpoint conflicts with one the witness cosigned"


class InconsistentCheckpoint(IntegrityFailure):
    code = "inconsistent_checkpoint"
    title = "Consistency proof does not verify"


class CheckpointNotWitnessed(Unavailable):
    code = "checkpoint_not_witnessed"
    title = "No checkpoint has met the witness quorum yet"


class InvalidWitnessPolicy(ConfigurationError):
    code = "invalid_witness_policy"
    title = "Invalid witness policy file"


# --- webhooks (docs/webhooks.md) and the members' dashboard (docs/analytics.md) -------------


class InvalidWebhook(MalformedInput):
    code = "invalid_webhook"
    title = "Invalid webhook subscription"


class WebhookUrlRefused(MalformedInput):
    code = "webhook_url_refused"
    title = "Webhook URL not allowed"


class WebhookNotFound(NotFound):
    code = "webhook_not_found"
    title = "No such webhook subscription"


class TooManyWebhooks(Conflict):
    code = "too_many_webhooks"
    title = "Webhook subscription limit reached"


class DashboardTokenInvalid(Unauthenticated):
    code = "dashboard_token_invalid"
    title = "Dashboard link does not verify"


class DashboardTokenExpired(Unauthenticated):
    code = "dashboard_token_expired"
    title = "Dashboard link expired"


class WebhookSecretUnreadable(ConfigurationError):
    code = "webhook_secret_unreadable"
    title = "Webhook secret cannot be decrypted"


def all_error_classes() -> list[type[LedgerError]]:
    """Every class of the tree, root first (for the code table and its tests)."""
    found: list[type[LedgerError]] = []
    todo: list[type[LedgerError]] = [LedgerError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def error_for_code(code: str, detail: str, **facts: Any) -> LedgerError:
    """Rebuild an error from its stored code (a refusal recorded at sealing)."""
    for cls in all_error_classes():
        if cls.code == code:
            return cls(detail, **facts)
    return LedgerError(detail, **facts)
