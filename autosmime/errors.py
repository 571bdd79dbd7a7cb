"""Every error autosmime raises on purpose, in one place.

    >>> from autosmime.errors import BadSignature, AutosmimeError
    >>> try:
    ...     raise BadSignature("message-digest mismatch")
    ... except AutosmimeError as e:
    ...     print(e.exit_code, e)
    1 message-digest mismatch

Each class carries the process exit code the CLI uses for it, so the CLI
never has to guess. Messages are one line, meant for the user, and never
contain secrets (keys, passwords, recovery codes).
"""

from __future__ import annotations


class AutosmimeError(Exception):
    """Base of every deliberate autosmime failure."""

    exit_code: int = 1

    def __str__(self) -> str:  # one line, always
        text = super().__str__() or self.__class__.__doc__ or self.__class__.__name__
        return " ".join(text.split())


class UsageError(AutosmimeError):
    """The command was called wrongly."""

    exit_code = 2


# --- message engine -------------------------------------------------------


class MessageError(AutosmimeError):
    """A message could not be processed."""


class MalformedMessage(MessageError):
    """The message is not well-formed MIME or CMS."""


class UnsupportedAlgorithm(MessageError):
    """The message uses an algorithm autosmime does not implement."""

    def __init__(self, algorithm: str, what: str = "algorithm") -> None:
        super().__init__(f"unsupported {what}: {algorithm}")
        self.algorithm = algorithm


class SignatureError(MessageError):
    """A signature could not be accepted."""


class BadSignature(SignatureError):
    """The signature does not match the content or the signer's key."""


class UntrustedSigner(SignatureError):
    """The signer's certificate does not chain to a trusted root."""


class ExpiredSigner(UntrustedSigner):
    """The signer's certificate (or one in its chain) was not valid at the time checked."""


class SignerMismatch(SignatureError):
    """The signer's certificate does not name the address in From."""


class DecryptionError(MessageError):
    """A message could not be decrypted."""


class NotForMe(DecryptionError):
    """The message is not addressed to any key this user holds."""


class NoKey(AutosmimeError):
    """No key or certificate is available for the operation."""


class NoRecipientCertificate(NoKey):
    """Certificates were found for a recipient but none is usable; ``reasons`` says why, per source."""

    def __init__(self, address: str, reasons: list[str]) -> None:
        self.address = address
        self.reasons = list(reasons)
        super().__init__(f"no usable certificate for {address}" + (f" ({'; '.join(reasons)})" if reasons else ""))


class RecipientNotFound(NoRecipientCertificate):
    """No certificate at all for a recipient: not in the contacts, not published, none in DNS."""

    exit_code = 3


# --- keys and certificates --------------------------------------------------


class KeyFileError(AutosmimeError):
    """A key, certificate or PKCS#12 file could not be read."""


class WrongPassword(KeyFileError):
    """The password does not open the file."""


# --- mailbox ----------------------------------------------------------------


class MailboxError(AutosmimeError):
    """The mail server could not be used."""


class AuthenticationFailed(MailboxError):
    """The mail server rejected the user name or password."""


class ServerUnreachable(MailboxError):
    """The mail server could not be reached."""


class TLSFailure(MailboxError):
    """The TLS connection to the mail server failed or could not be verified."""


class FolderError(MailboxError):
    """A mailbox folder is missing or cannot be used."""


class AccountError(AutosmimeError):
    """The account is not configured or its settings are invalid."""


# --- vault and backup -------------------------------------------------------


class VaultError(AutosmimeError):
    """The device's key vault could not be used."""


class BackupError(AutosmimeError):
    """A key backup could not be written, found or accepted."""


class NoBackupFound(BackupError):
    """No key backup exists in the mailbox."""

    exit_code = 3


class BackupRejected(BackupError):
    """A backup was found but is not authentic, complete or current."""


class WrongRecoveryCode(BackupRejected):
    """The recovery code does not open the backup."""


class RolledBackBackup(BackupRejected):
    """The backup is older than one this device has already seen."""


class JoinError(BackupError):
    """A new device could not join through the mailbox."""


class NoJoinRequest(JoinError):
    """No pending join request from a new device is in the mailbox."""


class JoinCodeMismatch(JoinError):
    """The code shown does not match the join request; nothing was sent."""


class JoinTimeout(JoinError):
    """No approval arrived in time; the join request was withdrawn."""


class JoinRefused(JoinError):
    """The approval's confirmation code was not confirmed; nothing was restored."""


class BadInvitation(JoinError):
    """An invitation code is mistyped, unknown, used or expired."""

    exit_code = 2


class DiscoveryError(AccountError):
    """No mail settings could be found for an address."""


class MailboxTimeout(ServerUnreachable):
    """The mail server accepted the connection but did not answer in time."""


# --- certificate enrolment (ACME for S/MIME, RFC 8823) -------------------------


class EnrollmentError(AutosmimeError):
    """A certificate could not be obtained, renewed or revoked."""


class CAUnreachable(EnrollmentError):
    """The certificate authority could not be reached."""


class CAError(EnrollmentError):
    """The certificate authority refused a request."""

    def __init__(self, message: str, acme_type: str | None = None) -> None:
        super().__init__(message)
        self.acme_type = acme_type  # e.g. "urn:ietf:params:acme:error:badCSR"


class RateLimited(CAError):
    """The certificate authority asks to slow down; try again later."""


class ReplyRejected(CAError):
    """The certificate authority did not accept the reply to its challenge mail."""


class ChallengeMailTimeout(EnrollmentError):
    """The certificate authority's challenge mail did not arrive in time."""


class ChallengeMailInvalid(EnrollmentError):
    """A mail claiming to be the CA's challenge is not authentic or not well-formed."""

# --- key directory and exchange -----------------------------------------------


class DirectoryError(AutosmimeError):
    """The key directory could not be used."""


class DirectoryUnreachable(DirectoryError):
    """The key directory could not be reached."""


class NotPublished(DirectoryError):
    """No certificate is published for this address."""

    exit_code = 3


class DirectoryRateLimited(DirectoryError):
    """The key directory asks to wait before the next request."""

    def __init__(self, message: str, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PublishRejected(DirectoryError):
    """The key directory refused to publish, confirm or withdraw a certificate."""


class LogVerificationError(DirectoryError):
    """A directory answer does not verify against its transparency log."""


class LogForked(LogVerificationError):
    """The directory's log is not an extension of the checkpoint seen before: a forked or rewritten history."""


class CertificateSwapped(LogVerificationError):
    """The directory answered with a certificate its log does not show for that address."""


# --- certificate authority server --------------------------------------------


class CAServerError(AutosmimeError):
    """The certificate authority server could not be set up or started."""


class CADirError(CAServerError):
    """The CA directory is missing, incomplete or cannot be opened."""


class DNSZoneError(CAServerError):
    """A DNS zone file could not be read."""


# --- signature verdicts (issue 9) --------------------------------------------


class BadDigest(BadSignature):
    """The content was changed after signing: its digest differs from the signed one."""


class TimeMismatch(SignatureError):
    """The signing time and the message's Date differ by more than an hour (an old body under a new date)."""


class WeakAlgorithm(UnsupportedAlgorithm):
    """The message uses an algorithm refused as too weak (SHA-1 signatures)."""


# --- the account's recovery code (appended by the agent layer) ----------------


class RecoveryCodeNeeded(BackupError):
    """The account already has key backups under a recovery code this device does not hold.

    Writing under a new code would split the account's backups; the user must
    restore or join first (or deliberately run `autosmime recovery-code rotate`).
    """

    exit_code = 4


# --- sending mail (appended by the agent's send flow) -------------------------


class EncryptionUnavailable(AutosmimeError):
    """``send --require-encryption``, and some recipient has no usable certificate: nothing was sent."""


class NotSent(MailboxError):
    """The mail server could not take the message; it is kept in the outbox for the next attempt."""


# --- key statuses (issue 13) ---------------------------------------------------


class KeyStatusRefused(VaultError):
    """That key cannot take that status: it is expired, revoked, or not for the account's address."""


# --- the demo (appended by the demo helper) -----------------------------------


class DemoFailed(AutosmimeError):
    """A step of `autosmime demo` was not verified; ``step`` is its number."""

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


# --- a flooded backup folder (issue 10 §3, review) -----------------------------


class NoAuthenticBackup(BackupRejected):
    """None of the newest candidate messages examined is authentic under the recovery code, and the folder
    holds more: a wrong code, or messages planted in the folder. ``restore --examine N`` looks further."""


# --- LDAP as a recipient lookup source (issue 12) -----------------------------


class LDAPError(DirectoryError):
    """An LDAP directory could not be searched for a recipient's certificates."""


class LDAPUnreachable(LDAPError):
    """The LDAP server could not be reached, or did not answer in time."""


class LDAPTLSFailure(LDAPError):
    """TLS with the LDAP server failed (ldaps or StartTLS): no verified connection, nothing asked."""


class LDAPBadURL(LDAPError):
    """The LDAP URL (or its base DN) is unusable, e.g. plain ldap:// to a host that is not loopback."""

    exit_code = 2


# --- revocation (the signer's certificate; appended by the 'revoke' helper) -----


class RevokedSigner(UntrustedSigner):
    """The signer's certificate was revoked: for a key compromise, or before the message was signed."""


# --- the contacts file (appended by the 'qa' helper) -----------------------------------------


class ContactsError(AutosmimeError):
    """The contacts file (certificates learnt from mail and the directory) exists but cannot be read."""


class MessageRefused(MailboxError):
    """The SMTP server refused the message for good (a 5xx reply: too big, a recipient refused, policy):
    sending it again as it is will not get it through."""
