"""S3 client settings: which requests carry a SHA-256 of their payload."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.worker.plan import Destination, Secrets
from ferry.worker.upload import make_client


class CapturedRequestError(Exception):
    """Stops the request once it is signed, carrying its headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("request captured")
        self.headers = headers


def signed_headers(endpoint: str | None) -> dict[str, str]:
    """The headers of a signed PutObject, captured just before it would be sent."""
    dest = Destination(bucket="b", prefix="p", endpoint=endpoint, region="us-east-1",
                       path_style=True)
    client = make_client(dest, Secrets("postgresql://", "AKIDEXAMPLE", "secret", None))

    def capture(request: Any, **_: Any) -> None:
        raise CapturedRequestError({k.lower(): v.decode() if isinstance(v, bytes) else v
                    for k, v in request.headers.items()})

    client.meta.events.register("before-send.s3.PutObject", capture)
    with pytest.raises(CapturedRequestError) as sent:
        client.put_object(Bucket="b", Key="k", Body=b"some data")
    return sent.value.headers


@pytest.mark.parametrize("endpoint", ["https://s3.example.com", None])
def test_https_uploads_skip_the_payload_hash(endpoint: str | None) -> None:
    """TLS protects the body; a second SHA-256 pass over every byte buys nothing."""
    assert signed_headers(endpoint)["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"


def test_plain_http_uploads_sign_the_payload() -> None:
    """Without TLS the signature is all that protects the body."""
    digest = signed_headers("http://minio.local:9000")["x-amz-content-sha256"]
    assert len(digest) == 64 and digest != "UNSIGNED-PAYLOAD"
