"""The verification snippet in docs/webhooks.md accepts what we send and refuses a
tampered body, a wrong secret and an old timestamp."""

from __future__ import annotations

import re
import time
from pathlib import Path

from console.webhooks import signing
from console.webhooks.secrets import new_signing_secret

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def _snippet_verify():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


def test_the_documented_snippet_verifies_our_signatures():
    verify = _snippet_verify()
    secret = new_signing_secret()
    body = b'{"data":{"operation":"create"},"type":"lifecycle.create"}'
    headers = signing.headers(secret, "del_abc", int(time.time()), body)
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
    assert not verify(new_signing_secret(), headers, body)
    old = signing.headers(secret, "del_abc", int(time.time()) - 3600, body)
    assert not verify(secret, old, body)
    rotated = dict(headers, **{"webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]})
    assert verify(secret, rotated, body)
    assert signing.verify(secret, headers, body, now=int(time.time()))
