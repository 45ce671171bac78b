"""The EC2 client: the seed's endpoint and region forms, and what goes wrong on the way to
the cloud — an endpoint nobody answers at, a page in the cloud's place — as a
:class:`CloudError` saying so, never holding the secret key."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from precip_repro import CloudError, EC2Experiment, InvalidOption, finish_run
from precip_repro.clouds.ec2_client import parse_endpoint, parse_region
from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY


def test_an_unreachable_endpoint_is_a_cloud_error_saying_so(store):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CloudError) as info:
        EC2Experiment(
            "us-east-1", f"http://127.0.0.1:{port}", ACCESS_KEY, SECRET_KEY, records=store.root
        )
    assert info.value.code == "EndpointUnreachable"
    assert f"http://127.0.0.1:{port}" in str(info.value)
    assert "check the endpoint URL" in str(info.value)
    assert SECRET_KEY not in str(info.value)
    finish_run()


class PageInTheCloudsPlace:
    """A real HTTP endpoint on 127.0.0.1 in front of moto: its first ``pages`` answers are
    an error page (``status``, ``page``) — what a proxy or a crashed server sends — and the
    rest are moto's own."""

    def __init__(self, upstream: str, *, pages: int, status: int, page: bytes) -> None:
        self.pages = pages
        self.sent_pages = 0
        self.forwarded = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.sent_pages < outer.pages:
                    outer.sent_pages += 1
                    self._answer(status, {"Content-Type": "text/html"}, page)
                    return
                outer.forwarded += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                request = urllib.request.Request(upstream, data=body, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        self._answer(answer.status, dict(answer.headers), answer.read())
                except urllib.error.HTTPError as refused:
                    self._answer(refused.code, dict(refused.headers), refused.read())

            def _answer(self, code: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(code)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_server_error_page_in_the_clouds_place_is_retried_as_the_error_it_is(ec2, store):
    # botocore parses a 5xx page that does not start with "<html>" as XML and gives up.
    page = b"<!doctype html>\n<title>500 Internal Server Error</title>\n<h1>Oops</h1>\n"
    proxy = PageInTheCloudsPlace(ec2.url, pages=2, status=500, page=page)
    try:
        exp = EC2Experiment(
            "us-east-1", proxy.url, ACCESS_KEY, SECRET_KEY, "paged", subnet_id=ec2.subnet,
            ssh_address="private", records=store.root,
        )  # fmt: skip
        assert proxy.sent_pages == 2 and proxy.forwarded >= 1
        assert [p["KeyName"] for p in ec2.client.describe_key_pairs()["KeyPairs"]] == [
            exp.keys.key_name
        ]
        exp.close()
    finally:
        proxy.close()
    finish_run()


@pytest.mark.parametrize(
    "status, page, code",
    [
        (403, b"<!doctype html>\n<title>No</title>\n<p>Proxy says no\n", "UnparseableResponse"),
        (407, b"<!DOCTYPE html>\n<html><body>Proxy says no</body></html>\n", "407"),  # XML
    ],
)
def test_a_page_in_the_clouds_place_is_a_cloud_error_saying_so(ec2, store, status, page, code):
    proxy = PageInTheCloudsPlace(ec2.url, pages=10**6, status=status, page=page)
    try:
        with pytest.raises(CloudError) as info:
            EC2Experiment("us-east-1", proxy.url, ACCESS_KEY, SECRET_KEY, records=store.root)
    finally:
        proxy.close()
    assert info.value.code == code
    message = str(info.value)
    assert "DescribeKeyPairs on ec2 at " + proxy.url in message
    if code == "UnparseableResponse":
        assert "not an EC2 API response" in message and "Proxy says no" in message
    else:
        assert f"HTTP {status}, and the answer holds no EC2 error" in message
    assert "any proxy between this machine and the cloud" in message
    assert SECRET_KEY not in message
    finish_run()


@pytest.mark.parametrize(
    "endpoint, url",
    [
        ("ec2.us-west-2.amazonaws.com", "https://ec2.us-west-2.amazonaws.com"),
        ("http://cloud.example:8773/services/Cloud", "http://cloud.example:8773/services/Cloud"),
        ("http://euca:8773/services/Eucalyptus/", "http://euca:8773/services/Eucalyptus"),
        ("https://nimbus.example:8444", "https://nimbus.example:8444"),
    ],
)
def test_the_seed_endpoint_forms_become_urls(endpoint, url):
    assert parse_endpoint(endpoint) == url


def test_an_availability_zone_stands_for_its_region():
    assert parse_region("us-west-2c") == ("us-west-2", "us-west-2c")
    assert parse_region("us-east-1") == ("us-east-1", None)
    assert parse_region("eu-central-1a") == ("eu-central-1", "eu-central-1a")


def test_a_private_clouds_own_region_name_is_taken_and_a_malformed_one_refused():
    assert parse_region("RegionOne") == ("RegionOne", None)
    for bad in ("", "us west", None, "-east"):
        with pytest.raises(InvalidOption, match="a region such as us-east-1"):
            parse_region(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidOption, match="endpoint=5"):
        parse_endpoint(5)  # type: ignore[arg-type]
