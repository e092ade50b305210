"""A ledger's witness policy in the c2sp.org/tlog-policy format: witnesses, groups, quorum.

::

    # the ledger itself (optional; when present it must be this ledger's vkey)
    log ledger.example/olive-oil+3a8f17c2+AZ0...
    witness w1 witness-one.example/w+1a2b3c4d+BK8... http://witness-one.example:7380
    witness w2 witness-two.example/w+5e6f7a8b+BM2... http://witness-two.example:7380
    group both 2 w1 w2
    quorum both

Lines are items separated by spaces or tabs; empty lines and ``#`` comments are ignored. A
witness is ``witness <name> <vkey> [<url>]`` with a type 0x04 (cosignature/v1) vkey, the URL
being its tlog-witness submission prefix; ``group <name> all|any|<k> <member>...`` needs k of
its members (witnesses or earlier groups); exactly one ``quorum <name>|none``. Names are
local to the file. Refused, as the spec asks: duplicate keys or names, a member listed twice,
a reference to a name not defined on an earlier line, control characters other than tab.
"""

from __future__ import annotations

import re
from collections.abc import Set
from dataclasses import dataclass

from ledger.cosignature import CosignerVerifier
from ledger.errors import InvalidWitnessPolicy, MalformedNote
from ledger.notes import NoteVerifier

__all__ = ["PolicyWitness", "WitnessPolicy"]

_THRESHOLD = re.compile(r"[1-9][0-9]{0,3}")
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


@dataclass(frozen=True, slots=True)
class PolicyWitness:
    """A witness of the policy: its local name, cosigner key, submission prefix (if any)."""

    name: str
    verifier: CosignerVerifier
    url: str | None

    @property
    def add_checkpoint_url(self) -> str | None:
        return None if self.url is None else self.url.rstrip("/") + "/add-checkpoint"


@dataclass(frozen=True, slots=True)
class _Group:
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """A parsed policy. ``quorum`` is None for ``quorum none``."""

    logs: tuple[NoteVerifier, ...]
    witnesses: tuple[PolicyWitness, ...]
    groups: tuple[tuple[str, _Group], ...]
    quorum: str | None

    def witness(self, name: str) -> PolicyWitness | None:
        return next((w for w in self.witnesses if w.name == name), None)

    def satisfied(self, cosigned: Set[str]) -> bool:
        """Whether witnesses named ``cosigned`` (policy names) meet the quorum."""
        if self.quorum is None:
            return True
        groups = dict(self.groups)

        def met(name: str) -> bool:
            group = groups.get(name)
            if group is None:
                return name in cosigned
            # Definitions only refer to earlier lines, so this recursion ends.
            return sum(met(m) for m in group.members) >= group.threshold

        return met(self.quorum)

    @classmethod
    def parse(cls, data: bytes | str, *, source: str = "the witness policy") -> WitnessPolicy:
        """Parse a policy file. Raises InvalidWitnessPolicy naming the line and what to fix."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidWitnessPolicy(f"{source} is not UTF-8", source=source) from exc
        logs: list[NoteVerifier] = []
        witnesses: dict[str, PolicyWitness] = {}
        groups: dict[str, _Group] = {}
        quorum: list[str | None] = []
        keys: set[bytes] = set()

        for number, line in enumerate(text.split("\n"), start=1):
            def fail(problem: str) -> InvalidWitnessPolicy:
                return InvalidWitnessPolicy(f"{source}, line {number}: {problem}", source=source, line=number)

            if any(c < " " and c != "\t" for c in line) or "\x7f" in line:
                raise fail("control characters other than tab are not allowed")
            items = line.replace("\t", " ").split()
            if not items or items[0].startswith("#"):
                continue
            keyword, args = items[0], items[1:]
            if keyword == "log":
                if len(args) not in (1, 2):
                    raise fail("expected: log <vkey> [<url>]")
                try:
                    log = NoteVerifier.parse(args[0])
                except MalformedNote as exc:
                    raise fail(f"not an Ed25519 log vkey: {exc.detail}") from exc
                if log.public_key in keys:
                    raise fail("this key is listed twice")
                keys.add(log.public_key)
                logs.append(log)
            elif keyword == "witness":
                if len(args) not in (2, 3):
                    raise fail("expected: witness <name> <vkey> [<url>]")
                name = args[0]
                if name == "none" or name in witnesses or name in groups:
                    raise fail(f"the name {name!r} is reserved or already defined")
                try:
                    verifier = CosignerVerifier.parse(args[1])
                except MalformedNote as exc:
                    raise fail(f"not a cosignature/v1 (type 0x04) vkey: {exc.detail}") from exc
                if verifier.public_key in keys:
                    raise fail("this key is listed twice")
                url = args[2] if len(args) == 3 else None
                if url is not None and not _URL.fullmatch(url):
                    raise fail(f"{url!r} is not an http:// or https:// URL without query or fragment")
                keys.add(verifier.public_key)
                witnesses[name] = PolicyWitness(name=name, verifier=verifier, url=url)
            elif keyword == "group":
                if len(args) < 3:
                    raise fail("expected: group <name> all|any|<k> <member>...")
                name, k, members = args[0], args[1], tuple(args[2:])
                if name == "none" or name in witnesses or name in groups:
                    raise fail(f"the name {name!r} is reserved or already defined")
                for member in members:
                    if member not in witnesses and member not in groups:
                        raise fail(f"{member!r} is not a witness or group defined on an earlier line")
                if len(set(members)) != len(members):
                    raise fail("a member is listed twice")
                if k == "all":
                    threshold = len(members)
                elif k == "any":
                    threshold = 1
                elif _THRESHOLD.fullmatch(k) and int(k) <= len(members):
                    threshold = int(k)
                else:
                    raise fail(f"threshold {k!r} must be all, any or a decimal k with 1 <= k <= {len(members)}")
                groups[name] = _Group(threshold=threshold, members=members)
            elif keyword == "quorum":
                if len(args) != 1:
                    raise fail("expected: quorum <name> or quorum none")
                if quorum:
                    raise fail("a policy has exactly one quorum line")
                if args[0] != "none" and args[0] not in witnesses and args[0] not in groups:
                    raise fail(f"{args[0]!r} is not a witness or group defined on an earlier line")
                quorum.append(None if args[0] == "none" else args[0])
            else:
                raise fail(f"unknown keyword {keyword!r} (log, witness, group, quorum)")
        if not quorum:
            raise InvalidWitnessPolicy(f"{source} has no quorum line (use 'quorum none' for none)", source=source)
        return cls(
            logs=tuple(logs),
            witnesses=tuple(witnesses.values()),
            groups=tuple(groups.items()),
            quorum=quorum[0],
        )
