"""Judge client: retry arithmetic, cache keys, and behaviour against a faulty fake server."""

from __future__ import annotations

import email.utils
import random
from pathlib import Path

import pytest

from evalkit.judge.cache import ResponseCache, cache_key
from evalkit.judge.client import ChatCall, ChatClient, backoff_delay, parse_retry_after
from evalkit.judge.prompts import judge_messages, load_rules, review_content
from evalkit.judge.settings import ClientSettings
from tests.fake_openai import JUDGE_SYSTEM, FakeOpenAI
from tests.judged_helpers import KEY


def settings(url: str, cache: Path | None, **kw: object) -> ClientSettings:
    base: dict[str, object] = dict(
        base_url=url,
        model="judge-x",
        api_key_vars=("EVALKIT_TEST_KEY",),
        max_concurrency=6,
        timeout_s=0.3,
        max_attempts=10,
        backoff_base_s=0.001,
        backoff_max_s=0.005,
        cache_path=cache,
    )
    base.update(kw)
    return ClientSettings(**base)  # type: ignore[arg-type]


def judge_call(i: int) -> ChatCall:
    return ChatCall(
        f"q{i}", judge_messages(f"[Question]\nquestion {i}"), {"temperature": 0.2, "max_tokens": 64}
    )


def test_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=1_000_000) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_grows_is_jittered_capped_and_honours_retry_after() -> None:
    rng = random.Random(0)
    delays = [backoff_delay(a, None, 1.0, 8.0, 60.0, rng) for a in range(1, 7)]
    for attempt, d in enumerate(delays, start=1):
        step = min(8.0, 2.0 ** (attempt - 1))
        assert step * 0.5 <= d <= step
    assert backoff_delay(1, 5.0, 1.0, 8.0, 60.0, rng) >= 5.0  # the server's wish wins
    assert backoff_delay(1, 500.0, 1.0, 8.0, 60.0, rng) == 60.0  # ... up to a cap


def test_cache_key_hashes_images_and_ignores_the_key(tmp_path: Path) -> None:
    a = judge_messages("x", b"\x89PNG-one")
    b = judge_messages("x", b"\x89PNG-two")
    k1 = cache_key("http://h/v1/", "m", {"temperature": 0.2}, a)
    assert k1 == cache_key("http://h/v1", "m", {"temperature": 0.2}, a)
    assert k1 != cache_key("http://h/v1", "m", {"temperature": 0.2}, b)
    assert k1 != cache_key("http://h/v1", "m", {"temperature": 0.7}, a)
    assert k1 != cache_key("http://h/v1", "m2", {"temperature": 0.2}, a)
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put(k1, "m", "8 9\nfine")
    assert cache.get(k1) == "8 9\nfine" and cache.get("nope") is None and len(cache) == 1


def test_review_content_default_and_reference_quirk() -> None:
    default = review_content("CTX", "Q?", "REF", "MODEL", "RULE")
    assert default == (
        "[Context]\nCTX\n\n[Question]\nQ?\n\n[Assistant 1]\nREF\n\n[End of Assistant 1]\n\n"
        "[Assistant 2]\nMODEL\n\n[End of Assistant 2]\n\n[System]\nRULE\n\n"
    )
    quirk = review_content("CTX", "Q?", "REF", "MODEL", "RULE", reference_quirk=True)
    assert quirk == "[Context]\\CTX" + default[len("[Context]\nCTX") :]


def test_rule_files(shared_dir: Path, tmp_path: Path) -> None:
    mdvp = load_rules(shared_dir / "fixtures/mdvp/rule.json")  # released with a trailing comma
    assert sorted(mdvp) == ["box", "point"] and mdvp["point"]["role"] == "Assistant"
    assert "(x1, y1, w, h)" in mdvp["box"]["prompt"]
    ferret = load_rules(shared_dir / "fixtures/ferret/rule.json")
    assert {"refer_desc", "refer_reason"} <= set(ferret)
    bad = tmp_path / "rule.json"
    bad.write_text('{"box": {"role": "Assistant"}}')
    from evalkit.errors import DataError

    with pytest.raises(DataError, match="prompt"):
        load_rules(bad)


def test_faulty_server_every_call_ends_once_and_cache_stops_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALKIT_TEST_KEY", KEY)
    doomed = {"question 7", "question 23"}
    with FakeOpenAI(fault_rate=0.3, api_key=KEY, always_fail=lambda t: any(d in t for d in doomed)) as srv:
        client = ChatClient(settings(srv.url, tmp_path / "cache.sqlite", max_attempts=6))
        calls = [judge_call(i) for i in range(60)]
        first = list(client.run(calls))
        client.close()
        ids = [o.id for o in first]
        assert sorted(ids) == sorted(c.id for c in calls)  # every call once, none twice
        failed = {o.id for o in first if not o.ok}
        assert failed == {"q7", "q23"}
        for o in first:
            if o.ok:
                assert o.error is None and 1 <= o.attempts <= 6
            else:
                assert o.error == "HTTP 500 after 6 attempt(s)" and o.attempts == 6
        assert sum(srv.faults.values()) > 10 and set(srv.faults) == {
            "429",
            "500",
            "timeout",
            "reset",
        }
        assert srv.auth_failures == 0
        assert len(srv.successes) == 58 and set(srv.successes.values()) == {1}
        before = srv.requests

        again = ChatClient(settings(srv.url, tmp_path / "cache.sqlite", max_attempts=1))
        second = {o.id: o for o in again.run(calls[:5] + calls[8:20])}
        again.close()
        assert srv.requests == before  # all from the cache
        assert all(o.cached and o.ok for o in second.values())
        assert second["q3"].text == {o.id: o for o in first}["q3"].text
    cached = ResponseCache(tmp_path / "cache.sqlite")
    assert len(cached) == 58  # only successes are cached


def test_bad_request_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALKIT_TEST_KEY", "wrong-key")
    with FakeOpenAI(fault_rate=0.0, api_key=KEY) as srv:
        client = ChatClient(settings(srv.url, None))
        (outcome,) = client.run([judge_call(0)])
        assert outcome.error == "HTTP 401 (not retryable)" and srv.requests == 1
        assert JUDGE_SYSTEM in str(judge_call(0).messages)


def test_api_adapter_refuses_a_key_argument_and_rewrites_prompts() -> None:
    from evalkit.errors import ConfigError
    from evalkit.models import build_adapter
    from evalkit.models.api import rewrite_prompt

    with pytest.raises(ConfigError, match="environment variable"):
        build_adapter("api", {"base_url": "http://x/v1", "model": "m", "api_key": "sk-1"})
    with pytest.raises(ConfigError, match="base_url"):
        build_adapter("api", {"model": "m"})
    assert rewrite_prompt("<image>.\nWhat is <region> next to <region>?", 2) == (
        "What is region 1 next to region 2?"
    )
    assert rewrite_prompt("<image>\nDescribe the marked regions.", 3) == "Describe the marked regions."
    with pytest.raises(ConfigError, match="2 <region> placeholders for 1"):
        rewrite_prompt("<region> and <region>", 1)
