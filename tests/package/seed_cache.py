"""Seeds roc-validator's HTTP cache (requests_cache, SQLite, as the validator opens it) with
documents from files, so that it validates with no network: run by the validator's own
Python (``.venv-rocv``), ``seed_cache.py CACHE URL FILE [URL FILE …]``."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import requests
import urllib3
from requests_cache import CachedSession


def main(cache: str, pairs: list[str]) -> None:
    # As roc-validator's HttpRequester opens it: the same backend, methods and codes.
    session = CachedSession(
        cache_name=cache,
        backend="sqlite",
        expire_after=-1,
        allowable_methods=("GET",),
        allowable_codes=(200, 302, 404),
    )
    for url, path in zip(pairs[::2], pairs[1::2], strict=True):
        body = Path(path).read_bytes()
        response = requests.Response()
        response.status_code = 200
        response.reason = "OK"
        response.url = url
        response.encoding = "utf-8"
        response._content = body
        response.headers["Content-Type"] = "application/ld+json"
        response.request = requests.Request("GET", url).prepare()
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(body),
            headers={"Content-Type": "application/ld+json"},
            status=200,
            preload_content=False,
        )
        response.raw._request_url = url  # what requests_cache keeps of the raw response
        session.cache.save_response(response)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
