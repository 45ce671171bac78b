"""The state board: one describe call for every instance a wait() watches."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from precip_repro.clouds.base import CloudInstance
from precip_repro.clouds.board import StateBoard
from tests.helpers import in_threads


class CountingCloud:
    """Answers describe from a dict, counting the calls and what each asked."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.asked: list[list[str]] = []
        self._lock = threading.Lock()

    def describe(self, instance_ids: Sequence[str]) -> list[CloudInstance]:
        with self._lock:
            self.asked.append(list(instance_ids))
        time.sleep(0.01)  # a round trip: others arrive meanwhile
        return [
            CloudInstance(instance_id=i, image_id="ami", instance_type="t", state=self.states[i])
            for i in instance_ids
            if i in self.states
        ]


def test_many_threads_asking_within_the_period_share_one_call_for_all():
    cloud = CountingCloud({f"i-{n}": "running" for n in range(20)})
    board = StateBoard(cloud, list(cloud.states), period=60)  # type: ignore[arg-type]
    found: dict[int, CloudInstance | None] = {}
    errors = in_threads(
        *(lambda n=n: found.update({n: board.describe(f"i-{n}")}) for n in range(20))
    )
    assert errors == []
    assert {n: inst.instance_id for n, inst in found.items() if inst} == {
        n: f"i-{n}" for n in range(20)
    }
    assert cloud.asked == [[f"i-{n}" for n in range(20)]]


def test_an_answer_older_than_the_period_is_asked_again_and_forgotten_ids_left_out():
    cloud = CountingCloud({"i-a": "pending", "i-b": "pending"})
    board = StateBoard(cloud, ["i-a", "i-b"], period=0.05)  # type: ignore[arg-type]
    assert board.describe("i-a").state == "pending"  # type: ignore[union-attr]
    cloud.states["i-a"] = "running"
    assert board.describe("i-a").state == "pending"  # type: ignore[union-attr]
    time.sleep(0.06)
    board.forget("i-b")
    assert board.describe("i-a").state == "running"  # type: ignore[union-attr]
    assert cloud.asked == [["i-a", "i-b"], ["i-a"]]


def test_a_new_id_is_asked_at_once_and_an_unlisted_one_is_none():
    cloud = CountingCloud({"i-a": "running", "i-new": "pending"})
    board = StateBoard(cloud, ["i-a"], period=60)  # type: ignore[arg-type]
    board.describe("i-a")
    assert board.describe("i-new").state == "pending"  # type: ignore[union-attr]
    assert board.describe("i-gone") is None
    assert cloud.asked == [["i-a"], ["i-a", "i-new"], ["i-a", "i-new", "i-gone"]]
