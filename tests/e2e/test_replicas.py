"""Several replicas behind one address: two `localai run` processes on the same models folder,
and a tiny round-robin client in front of them (what a load balancer does). Generation is
stateless between requests, so either replica answers alike; stored responses are per process,
which is what a balancer must know (route a response's follow-ups to the replica that made it)."""

from __future__ import annotations

import itertools
import json

import pytest

from tests.support import CHAT_MODEL, FRESH, LiveServer, get, post


@pytest.fixture(scope="module")
def replicas(chat_models_path):
    servers = []
    try:
        for _ in range(2):
            servers.append(LiveServer(chat_models_path, "--parallel", "2", "--threads", "1"))
        yield servers
    finally:
        for server in servers:
            server.stop()


class RoundRobin:
    """The smallest load balancer: each request to the next replica."""

    def __init__(self, servers) -> None:
        self._next = itertools.cycle(servers)

    def post(self, path: str, body: dict):
        server = next(self._next)
        return server, post(server, path, body)


def test_round_robin_replicas_answer_alike(replicas):
    balancer = RoundRobin(replicas)
    answers: dict[int, list[str]] = {replica.port: [] for replica in replicas}
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say hello."}], "temperature": 0,
            "max_tokens": 16, **FRESH}
    for _ in range(6):
        replica, (status, _, raw) = balancer.post("/v1/chat/completions", body)
        assert status == 200, raw
        answers[replica.port].append(json.loads(raw)["choices"][0]["message"]["content"])
    assert all(len(texts) == 3 for texts in answers.values())  # each replica served its half
    assert len({text for texts in answers.values() for text in texts}) == 1  # and they agree


def test_stored_responses_live_in_the_replica_that_made_them(replicas):
    first, second = replicas
    status, _, raw = post(first, "/v1/responses", {"model": CHAT_MODEL, "input": "Hi.", "max_output_tokens": 8,
                                                   "store": True})
    assert status == 200, raw
    response_id = json.loads(raw)["id"]
    assert get(first, f"/v1/responses/{response_id}")[0] == 200
    status, _, raw = get(second, f"/v1/responses/{response_id}")
    assert status == 404 and json.loads(raw)["error"]["type"] == "invalid_request_error"
