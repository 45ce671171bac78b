"""Local images: a digest that follows a directory's content and modes, and an image that
is none a clear error."""

from __future__ import annotations

import pytest

from precip_repro import CloudError
from precip_repro.clouds.local_images import image_digest


def test_an_image_digest_changes_with_content_and_mode(tmp_path):
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "app.conf"
    config.write_text("a=1\n")
    first = image_digest(tmp_path)
    config.write_text("a=2\n")
    second = image_digest(tmp_path)
    config.chmod(0o600)
    third = image_digest(tmp_path)
    assert len({first, second, third}) == 3
    assert image_digest(tmp_path) == third


def test_an_unknown_image_is_a_clear_error(local_experiment):
    exp = local_experiment("unknown-image")
    with pytest.raises(CloudError, match="neither 'default' nor a directory"):
        exp.provision("/no/such/image")
    assert exp.list() == []
