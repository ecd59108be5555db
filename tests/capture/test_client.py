"""The capture client (memoryweb_capture/client.py, cli.py) against a fake MemoryWeb on
loopback: the write-ahead spool, replay order, batches, failures kept, refusals set
aside, locking, and a command line that never fails a hook."""

from __future__ import annotations

import io
import json
import stat
import threading
from pathlib import Path

import pytest

from memoryweb_capture import cli, spool
from memoryweb_capture.client import BATCH_SIZE, Settings, Spool, capture, requeue_rejected
from memoryweb_capture.events import normalise_event
from tests.capture.support import PLANTED, SECRET_MARKERS, FakeMemoryWeb, free_port


def _events(count: int, session: str = "s1", start: int = 0) -> list[dict]:
    return [normalise_event({"id": f"{session}-{n:04d}", "event_type": "user_message",
                             "session_id": session, "text": f"message {n}"})
            for n in range(start, start + count)]


def _settings(tmp_path: Path, url: str, **extra) -> Settings:
    return Settings(server_url=url, api_key="test-key", spool_path=tmp_path / "cap" / "spool.jsonl",
                    timeout=extra.pop("timeout", 10), **extra)


def _spooled_ids(settings: Settings) -> list[str]:
    return [json.loads(line)["event"]["id"] for line in Spool(settings).read()]


def _down(tmp_path: Path) -> Settings:
    """Settings pointing at a closed port: connection refused."""
    return _settings(tmp_path, f"http://127.0.0.1:{free_port()}")


def test_events_are_sent_and_the_spool_emptied(tmp_path):
    with FakeMemoryWeb() as fake:
        settings = _settings(tmp_path, fake.url)
        report = capture(settings, _events(3))
    assert [e["id"] for e in fake.stored] == ["s1-0000", "s1-0001", "s1-0002"]
    assert fake.requests[0]["path"] == "/api/v1/events"
    assert fake.requests[0]["authorization"] == "Bearer test-key"
    assert (report.sent, report.stored, report.existing, report.pending) == (3, 3, 0, 0)
    assert _spooled_ids(settings) == []


def test_a_namespace_is_named_in_the_query(tmp_path):
    with FakeMemoryWeb() as fake:
        capture(_settings(tmp_path, fake.url, namespace="alpha"), _events(1))
    assert fake.requests[0]["path"] == "/api/v1/events?namespace=alpha"


def test_an_outage_spools_and_the_next_invocation_replays_oldest_first(tmp_path):
    down = _down(tmp_path)
    for n in range(3):
        report = capture(down, _events(2, start=2 * n))
        assert report.sent == 0 and report.failure.startswith("error")
    assert _spooled_ids(down) == [f"s1-{n:04d}" for n in range(6)]
    with FakeMemoryWeb() as fake:
        up = _settings(tmp_path, fake.url)
        capture(up, _events(1, start=6))
    assert [e["id"] for e in fake.stored] == [f"s1-{n:04d}" for n in range(7)]
    assert _spooled_ids(up) == []


def test_replay_goes_in_batches_of_at_most_a_hundred(tmp_path):
    capture(_down(tmp_path), _events(250))
    with FakeMemoryWeb() as fake:
        capture(_settings(tmp_path, fake.url), [])
    assert [len(request["events"]) for request in fake.requests] == [BATCH_SIZE, BATCH_SIZE, 50]
    assert [e["id"] for e in fake.stored] == [f"s1-{n:04d}" for n in range(250)]


def test_sending_stops_at_the_first_failure_and_keeps_the_rest_in_order(tmp_path):
    capture(_down(tmp_path), _events(250))
    with FakeMemoryWeb() as fake:
        fake.respond = lambda events: None if len(fake.requests) == 1 else (503, {"detail": "busy"}, {})
        settings = _settings(tmp_path, fake.url)
        report = capture(settings, [])
        assert report.sent == 100 and report.failure.startswith("HTTP 503")
        assert _spooled_ids(settings) == [f"s1-{n:04d}" for n in range(100, 250)]
        fake.respond = lambda events: None
        capture(settings, [])
    assert [e["id"] for e in fake.stored] == [f"s1-{n:04d}" for n in range(250)]


def test_a_lost_answer_is_sent_again_and_stored_once(tmp_path):
    with FakeMemoryWeb() as fake:
        def store_then_fail(events):
            if len(fake.requests) == 1:
                fake._store(events)
                return 502, {"detail": "proxy lost the answer"}, {}
            return None

        fake.respond = store_then_fail
        settings = _settings(tmp_path, fake.url)
        assert capture(settings, _events(2)).sent == 0
        report = capture(settings, [])
    assert (report.sent, report.stored, report.existing) == (2, 0, 2)
    assert [e["id"] for e in fake.stored] == ["s1-0000", "s1-0001"]


def test_a_refused_batch_is_retried_one_by_one_and_only_the_bad_event_set_aside(tmp_path):
    with FakeMemoryWeb() as fake:
        def refuse_bad(events):
            if any(e["text"] == "message 2" for e in events):
                return 400, {"error": "invalid", "field": "events[2].text"}, {}
            return None

        fake.respond = refuse_bad
        settings = _settings(tmp_path, fake.url)
        report = capture(settings, _events(5))
    assert [e["id"] for e in fake.stored] == ["s1-0000", "s1-0001", "s1-0003", "s1-0004"]
    assert [r["event"]["id"] for r in report.rejected] == ["s1-0002"]
    rejected = [json.loads(line) for line in settings.rejected_path.read_text().splitlines()]
    assert rejected[0]["event"]["id"] == "s1-0002" and "HTTP 400" in rejected[0]["error"]
    assert "events[2].text" in rejected[0]["error"]
    assert _spooled_ids(settings) == []


def test_a_bad_key_sets_the_batch_aside_and_requeue_brings_it_back(tmp_path):
    with FakeMemoryWeb() as fake:
        fake.respond = lambda events: (401, {"detail": "Invalid API key."}, {})
        settings = _settings(tmp_path, fake.url)
        report = capture(settings, _events(3))
        assert len(report.rejected) == 3 and len(fake.requests) == 1 and fake.stored == []
        assert _spooled_ids(settings) == []
        fake.respond = lambda events: None
        assert requeue_rejected(settings) == 3
        assert not settings.rejected_path.exists() or not settings.rejected_path.read_text()
        capture(settings, [])
    assert [e["id"] for e in fake.stored] == ["s1-0000", "s1-0001", "s1-0002"]


def test_429_keeps_the_events_and_backs_off(tmp_path):
    with FakeMemoryWeb() as fake:
        fake.respond = lambda events: (429, {"detail": "slow down"}, {"Retry-After": "120"})
        settings = _settings(tmp_path, fake.url)
        assert capture(settings, _events(2)).failure.startswith("HTTP 429")
        fake.respond = lambda events: None
        report = capture(settings, _events(1, start=2))
        assert report.sent == 0 and "backing off" in report.skipped
        assert len(fake.requests) == 1
        assert _spooled_ids(settings) == ["s1-0000", "s1-0001", "s1-0002"]
        flushed = capture(settings, [], ignore_backoff=True)  # what --flush does
    assert flushed.sent == 3 and not settings.state_path.exists()


def test_a_hanging_server_costs_one_timeout_and_keeps_the_events(tmp_path):
    with FakeMemoryWeb() as fake:
        fake.delay.set()
        settings = _settings(tmp_path, fake.url, timeout=0.3)
        report = capture(settings, _events(2))
        fake.release.set()
    assert report.sent == 0 and report.failure.startswith("timeout")
    assert _spooled_ids(settings) == ["s1-0000", "s1-0001"]
    assert settings.state_path.exists()  # the next hooks leave the network alone for a while


def test_a_server_that_trickles_its_answer_cannot_hold_the_hook(tmp_path):
    """Each byte comes well within the socket timeout, the whole answer far beyond the
    budget: the request is abandoned at the deadline and the events stay spooled."""
    with FakeMemoryWeb() as fake:
        fake.trickle = True
        settings = _settings(tmp_path, fake.url, timeout=0.5)
        report = capture(settings, _events(2))
    assert report.failure.startswith("timeout: no answer within 0.5 s")
    assert _spooled_ids(settings) == ["s1-0000", "s1-0001"]


def test_a_redirect_is_not_followed(tmp_path):
    with FakeMemoryWeb() as elsewhere, FakeMemoryWeb() as fake:
        fake.respond = lambda events: (307, {}, {"Location": elsewhere.url + "/api/v1/events"})
        settings = _settings(tmp_path, fake.url)
        report = capture(settings, _events(1))
    assert elsewhere.requests == [] and report.failure.startswith("HTTP 307")
    assert _spooled_ids(settings) == ["s1-0000"]


def test_the_spool_is_private(tmp_path):
    settings = _down(tmp_path)
    capture(settings, _events(1))
    Spool(settings).reject([{"event": _events(1)[0], "error": "x"}])
    assert stat.S_IMODE(settings.spool_path.parent.stat().st_mode) == 0o700
    for path in (settings.spool_path, settings.rejected_path, settings.log_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_everything_is_redacted_before_it_is_spooled(tmp_path):
    settings = _down(tmp_path)
    event = normalise_event({"event_type": "tool_result", "session_id": "s", "text":
                             f"{PLANTED['PLANTED_OPENAI']} {PLANTED['PLANTED_PEM']}",
                             "metadata": {"env": {"DB_PASSWORD": PLANTED["PLANTED_DB_PASSWORD"]},
                                          "note": PLANTED["PLANTED_AWS_ID"]}})
    event["text"] += " " + PLANTED["PLANTED_GITHUB"]  # even text that skipped conversion
    capture(settings, [event])
    spooled = settings.spool_path.read_text()
    for marker in SECRET_MARKERS:
        assert marker not in spooled
    assert "[REDACTED:github]" in spooled and "[REDACTED:credential]" in spooled


def test_an_invocation_that_finds_a_sender_leaves_its_events_to_it(tmp_path):
    with FakeMemoryWeb() as fake:
        settings = _settings(tmp_path, fake.url)
        spool = Spool(settings)
        with spool.sender() as held:
            assert held
            report = capture(settings, _events(2))
            assert report.sent == 0 and "another invocation" in report.skipped
            assert _spooled_ids(settings) == ["s1-0000", "s1-0001"]
        capture(settings, _events(1, start=2))
    assert [e["id"] for e in fake.stored] == ["s1-0000", "s1-0001", "s1-0002"]


def test_concurrent_invocations_deliver_everything_once_each_in_its_order(tmp_path):
    with FakeMemoryWeb() as fake:
        settings = _settings(tmp_path, fake.url, timeout=60)
        errors = []

        def agent(name: str) -> None:
            try:
                for n in range(10):
                    capture(settings, _events(2, session=name, start=2 * n))
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=agent, args=(f"agent{i}",)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    ids = [e["id"] for e in fake.stored]
    assert len(ids) == len(set(ids)) == 120
    for i in range(6):
        mine = [x for x in ids if x.startswith(f"agent{i}-")]
        assert mine == [f"agent{i}-{n:04d}" for n in range(20)]
    assert _spooled_ids(settings) == []


def test_a_damaged_spool_line_is_set_aside(tmp_path):
    settings = _down(tmp_path)
    capture(settings, _events(1))
    with settings.spool_path.open("a") as handle:
        handle.write('{"namespace": null, "event": {"id": "tr\n')
    capture(settings, _events(1, start=1))
    with FakeMemoryWeb() as fake:
        capture(_settings(tmp_path, fake.url), [])
    assert [e["id"] for e in fake.stored] == ["s1-0000", "s1-0001"]
    assert "unreadable spool line" in settings.rejected_path.read_text()


# -- the spool's bound and the cost of a hook -----------------------------------------------

def test_a_spool_over_its_cap_drops_the_oldest_with_a_log_line_and_sends_the_rest_in_order(tmp_path):
    down = _settings(tmp_path, f"http://127.0.0.1:{free_port()}", spool_max_bytes=20_000)
    first = capture(down, _events(60))
    assert first.dropped == 0 and first.pending == 60  # about 12 KB: under the cap
    second = capture(down, _events(60, start=60))
    kept = _spooled_ids(down)
    assert second.dropped > 0 and second.dropped + second.pending == 120 == second.dropped + len(kept)
    assert kept == [f"s1-{n:04d}" for n in range(second.dropped, 120)]  # the newest, in order
    assert Spool(down).status().waiting_bytes <= 20_000
    assert f"dropped {second.dropped} over the spool's cap" in second.summary()
    log = down.log_path.read_text()
    assert f"dropped the {second.dropped} oldest event(s)" in log and "MEMORYWEB_CAPTURE_SPOOL_MAX_MB" in log
    with FakeMemoryWeb() as fake:
        report = capture(_settings(tmp_path, fake.url, spool_max_bytes=20_000), [])
    assert [e["id"] for e in fake.stored] == kept
    assert (report.dropped, report.pending) == (0, 0) and down.spool_path.stat().st_size == 0


def test_the_cap_holds_without_a_key_too(tmp_path):
    settings = _settings(tmp_path, "http://127.0.0.1:9", spool_max_bytes=5_000)
    report = capture(settings, _events(100), send=False)
    assert report.dropped > 0 and Spool(settings).status().waiting_bytes <= 5_000
    assert _spooled_ids(settings) == [f"s1-{n:04d}" for n in range(report.dropped, 100)]


def test_a_hook_with_the_server_down_reads_only_the_head_of_a_large_spool(tmp_path):
    down = _down(tmp_path)
    capture(down, _events(5000))
    size = down.spool_path.stat().st_size
    assert size > 1_000_000
    failed = capture(down, _events(1, start=5000))  # connection refused
    assert failed.failure.startswith("error") and failed.pending == 5001
    assert failed.bytes_read < 64 * 1024 < size / 10
    no_key = capture(down, _events(1, start=5001), send=False)
    assert no_key.bytes_read < 1024 and no_key.pending == 5002
    with FakeMemoryWeb() as fake:  # and back: everything, once, in order
        capture(_settings(tmp_path, fake.url, timeout=60), [])
    assert [e["id"] for e in fake.stored] == [f"s1-{n:04d}" for n in range(5002)]


def test_sending_moves_the_head_and_compacts_instead_of_rewriting_per_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(spool, "COMPACT_MIN_BYTES", 10**9)
    capture(_down(tmp_path), _events(250))
    size = (tmp_path / "cap" / "spool.jsonl").stat().st_size
    with FakeMemoryWeb() as fake:
        fake.respond = lambda events: None if len(fake.requests) == 1 else (503, {"detail": "busy"}, {})
        settings = _settings(tmp_path, fake.url)
        report = capture(settings, [])
        assert report.sent == 100 and report.pending == 150
        assert settings.spool_path.stat().st_size == size  # not rewritten: the head moved
        assert _spooled_ids(settings) == [f"s1-{n:04d}" for n in range(100, 250)]
        monkeypatch.setattr(spool, "COMPACT_MIN_BYTES", 0)
        fake.respond = lambda events: None if len(fake.requests) == 3 else (503, {"detail": "busy"}, {})
        assert capture(settings, []).sent == 100
        # the head sent (200 lines) outweighs the 50 waiting: cut off, the rest kept
        lines = settings.spool_path.read_text().splitlines()
        assert [json.loads(line)["event"]["id"] for line in lines] == [f"s1-{n:04d}" for n in range(200, 250)]
        fake.respond = lambda events: None
        capture(settings, [])
    assert [e["id"] for e in fake.stored] == [f"s1-{n:04d}" for n in range(250)]
    assert settings.spool_path.stat().st_size == 0


@pytest.mark.parametrize("how", ["replaced", "rewritten in place"])
def test_a_head_file_of_another_spool_means_from_the_start_never_a_skip(tmp_path, how):
    capture(_down(tmp_path), _events(250))
    with FakeMemoryWeb() as fake:
        fake.respond = lambda events: None if len(fake.requests) == 1 else (503, {"detail": "busy"}, {})
        settings = _settings(tmp_path, fake.url)
        capture(settings, [])
        head = json.loads(Path(str(settings.spool_path) + ".head").read_text())
        assert head["offset"] > 0 and head["events"] == 150
        # The spool replaced by another file, or rewritten by hand (same inode): the
        # head's offset must not apply to it.
        waiting = "".join(line + "\n" for line in Spool(settings).read())
        if how == "replaced":
            other = settings.spool_path.with_name("other.jsonl")
            other.write_text(waiting)
            other.replace(settings.spool_path)
        else:
            settings.spool_path.write_text(waiting)
        assert _spooled_ids(settings) == [f"s1-{n:04d}" for n in range(100, 250)]
        fake.respond = lambda events: None
        report = capture(settings, [])
    assert report.sent == 150 and report.pending == 0
    assert [e["id"] for e in fake.stored] == [f"s1-{n:04d}" for n in range(250)]


def test_a_line_cut_short_by_a_crash_spoils_only_itself(tmp_path):
    settings = _down(tmp_path)
    capture(settings, _events(1))
    with settings.spool_path.open("a") as handle:
        handle.write('{"namespace": null, "event": {"id": "cut-sh')  # no newline: a crash
    capture(settings, _events(1, start=1))
    with FakeMemoryWeb() as fake:
        capture(_settings(tmp_path, fake.url), [])
    assert [e["id"] for e in fake.stored] == ["s1-0000", "s1-0001"]
    assert "cut-sh" in settings.rejected_path.read_text()


def test_the_spool_cap_comes_from_the_environment(tmp_path):
    def cap(raw: str | None) -> int:
        env = {} if raw is None else {"MEMORYWEB_CAPTURE_SPOOL_MAX_MB": raw}
        return Settings.from_env(env).spool_max_bytes

    mb = 1024 * 1024
    assert cap(None) == 50 * mb and cap("lots") == 50 * mb and cap("nan") == 50 * mb
    assert cap("200") == 200 * mb and cap("2.5") == int(2.5 * mb)
    assert cap("0") == mb and cap("-4") == mb and cap("1e9") == 10_000 * mb


# -- the command line -----------------------------------------------------------------------

def _env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    return {"MEMORYWEB_API_KEY": "test-key", "MEMORYWEB_SERVER_URL": url,
            "MEMORYWEB_CAPTURE_SPOOL": str(tmp_path / "cap" / "spool.jsonl"), **extra}


def _main(args: list[str], env: dict[str, str], stdin: str = "", **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(args, stdin=io.StringIO(stdin), stdout=out, environ=env, **kwargs)
    return code, out.getvalue()


def test_a_hook_sends_and_prints_nothing(tmp_path):
    line = json.dumps({"event_type": "user_message", "session_id": "s", "text": "hello"})
    with FakeMemoryWeb() as fake:
        code, out = _main(["--format", "jsonl"], _env(tmp_path, fake.url), line)
    assert (code, out) == (0, "")
    assert [e["text"] for e in fake.stored] == ["hello"]


def test_a_hook_never_fails_the_agent(tmp_path, monkeypatch):
    env = _env(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert _main(["--format", "claude-code"], env, "{garbage")[0] == 0
    assert _main(["--format", "nonsense"], env)[0] == 0
    assert _main(["--format", "codex"], env, "", )[0] == 0

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in capture")

    monkeypatch.setattr(cli, "capture", broken)
    line = json.dumps({"event_type": "user_message", "session_id": "s", "text": "x"})
    assert _main(["--format", "jsonl"], env, line) == (0, "")
    log = (tmp_path / "cap" / "capture.log").read_text()
    assert "RuntimeError: a bug in capture" in log and "bad arguments" in log
    assert "refused input 1 (claude-code)" in log


def test_without_a_key_a_hook_spools_and_strict_use_exits_2(tmp_path, capsys):
    env = _env(tmp_path, "http://127.0.0.1:9")
    del env["MEMORYWEB_API_KEY"]
    line = json.dumps({"event_type": "user_message", "session_id": "s", "text": "kept"})
    assert _main(["--format", "jsonl"], env, line) == (0, "")
    assert [json.loads(x)["event"]["text"] for x in Spool(Settings.from_env(env)).read()] == ["kept"]
    assert _main(["--format", "jsonl", "--strict"], env, line)[0] == 2
    assert "MEMORYWEB_API_KEY is not set" in capsys.readouterr().err


def test_strict_use_reports_refusals_with_exit_1(tmp_path, capsys):
    lines = "\n".join([json.dumps({"event_type": "user_message", "session_id": "s", "text": "fine"}),
                       json.dumps({"event_type": "user_message", "session_id": "s"})])
    with FakeMemoryWeb() as fake:
        code, out = _main(["--format", "jsonl"], _env(tmp_path, fake.url), lines, interactive=True)
    assert code == 1 and "sent 1" in out
    assert "input 2: text is required for user_message" in capsys.readouterr().err
    refused = json.loads((tmp_path / "cap" / "spool.rejected.jsonl").read_text().splitlines()[0])
    assert refused["line"] == 2 and refused["format"] == "jsonl"


def test_codex_takes_its_payload_as_an_argument_and_flush_sends_the_spool(tmp_path):
    body = json.dumps({"type": "agent-turn-complete", "thread-id": "t1", "turn-id": "1",
                       "input-messages": ["hi"], "last-assistant-message": "hello"})
    env = _env(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert _main(["--format", "codex", body], env) == (0, "")
    with FakeMemoryWeb() as fake:
        code, out = _main(["--flush", "--strict"], {**env, "MEMORYWEB_SERVER_URL": fake.url})
    assert code == 0 and "sent 2" in out
    assert [e["event_type"] for e in fake.stored] == ["user_message", "assistant_message"]


def test_settings_come_from_the_environment(tmp_path):
    settings = Settings.from_env({"MEMORYWEB_SERVER_URL": "http://mw:8000/", "MEMORYWEB_API_KEY": " k ",
                                  "MEMORYWEB_NAMESPACE": "alpha", "MEMORYWEB_CAPTURE_TIMEOUT": "0.5",
                                  "MEMORYWEB_CAPTURE_SPOOL": str(tmp_path / "s.jsonl")})
    assert (settings.server_url, settings.api_key, settings.namespace, settings.timeout) == \
        ("http://mw:8000", "k", "alpha", 0.5)
    assert settings.rejected_path == tmp_path / "s.rejected.jsonl"
    assert settings.log_path == tmp_path / "capture.log"
    assert Settings.from_env({"MEMORYWEB_CAPTURE_TIMEOUT": "forever"}).timeout == 2.0
    assert Settings.from_env({"MEMORYWEB_CAPTURE_TIMEOUT": "-3"}).timeout == 0.1
    default = Settings.from_env({})
    assert default.spool_path.name == "spool.jsonl" and default.spool_path.parent.name == ".memoryweb"
    assert default.server_url == "http://127.0.0.1:8000"
