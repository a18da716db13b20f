"""Records on a shared broker are sealed with the site key: AES-256-GCM.

Embeddings are biometric data, and a broker account that can read or write the site's
topics must learn nothing and inject nothing. Every payload is

    b"\\x01" | 12-byte random nonce | AES-GCM ciphertext and 16-byte tag

with the associated data `appliance-replication/1 \\0 <site> \\0 <topic>`: a record moved
to another topic (another person's) or another site fails authentication. The AES key
and the key that turns entity names into topic names are derived from the site secret
with HKDF-SHA256, so one secret of any length (the file `replication.key_file` or the
systemd credential `replication-key`) serves both and never appears on the wire.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.replication.records import RecordRefused

PAYLOAD_VERSION = b"\x01"
NONCE = 12
MIN_SECRET = 16
MAX_PAYLOAD = 2 * 1024 * 1024  # a person of 64 templates is ~200 kB; a digest ~1 MB


def _derive(secret: bytes, site: str, purpose: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"appliance-replication/1",
        info=purpose + b"\0" + site.encode(),
    ).derive(secret)


class SiteKey:
    def __init__(self, secret: bytes, site: str) -> None:
        if len(secret) < MIN_SECRET:
            raise ValueError(
                f"the replication key must be at least {MIN_SECRET} bytes "
                "(make one with: openssl rand -hex 32)"
            )
        self.site = site
        self._aead = AESGCM(_derive(secret, site, b"records"))
        self._names = _derive(secret, site, b"topics")

    def _aad(self, topic: str) -> bytes:
        return b"appliance-replication/1\0" + self.site.encode() + b"\0" + topic.encode()

    def seal(self, topic: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return PAYLOAD_VERSION + nonce + self._aead.encrypt(nonce, plaintext, self._aad(topic))

    def open(self, topic: str, payload: bytes) -> bytes:
        """The plaintext, or RecordRefused (wrong key, modified, moved, truncated)."""
        if len(payload) > MAX_PAYLOAD:
            raise RecordRefused(f"payload of {len(payload)} bytes is too large")
        if len(payload) < 1 + NONCE + 16 or payload[:1] != PAYLOAD_VERSION:
            raise RecordRefused("not a sealed replication payload")
        nonce, ct = payload[1 : 1 + NONCE], payload[1 + NONCE :]
        try:
            return self._aead.decrypt(nonce, ct, self._aad(topic))
        except InvalidTag:
            raise RecordRefused("authentication failed (wrong site key, or modified)") from None

    def topic_id(self, entity: str) -> str:
        """The topic segment of an entity: a keyed hash, so the broker sees no person id
        and no group name."""
        return hmac.new(self._names, entity.encode(), hashlib.sha256).hexdigest()[:32]
