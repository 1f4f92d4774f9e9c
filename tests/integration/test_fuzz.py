"""Bad input, generated: the properties of `lexdesk fuzz` (tools/fuzz/) on the suite's running
system, with far fewer inputs than the command's 10,000 so that it fits the suite's time.

Hypothesis draws WebSocket frames and callback requests, Schemathesis draws cases from the callback
app's OpenAPI schema; every answer must be the documented one (never a 5xx, never a socket closed
with 1011), and the bystander conversations, which reach an agent first, must come out exactly as
they went in. The seed is fixed and nothing is written to a Hypothesis database, so a run repeats.

Inputs that trigger the product bugs listed in tools/fuzz/known.py are not sent here (they are in
`lexdesk fuzz`); remove a bug from that list once it is fixed and this test covers it again."""

from __future__ import annotations

import json

from tools.fuzz.callbacks import schema_accepts
from tools.fuzz.frames import expect, mutate_token
from tools.fuzz.known import KNOWN_BUGS, body_bug, frame_bug, operator_bug
from tools.fuzz.report import FuzzReport
from tools.fuzz.run import fuzz_system
from tools.harness.system import System

FRAMES, CALLBACKS, SCHEMA_CASES = 200, 200, 100
SEED = 20261122


def explain(report: FuzzReport) -> str:
    """Every failure with the inputs that triggered it, for the assertion message."""
    lines = report.failures()
    for violation in report.violations.all():
        for example in violation.examples:
            lines.append(f"  {violation.phase} / {violation.kind}: input {example['input']}\n    {example['detail']}")
    return "\n".join(lines + report.notes)


def test_generated_bad_input_gets_documented_answers_and_leaves_bystanders_alone(system: System) -> None:
    report = fuzz_system(system, frames=FRAMES, callbacks=CALLBACKS, schema_cases=SCHEMA_CASES, seed=SEED,
                         backend="postgres", seconds=85, skip_known_bugs=False,
                         replay=False)  # the suite's other tests own the dead letters on this system
    assert report.passed, explain(report)
    # Not vacuous: the inputs went out, the ones that triggered the bugs it found included, and each
    # answer was checked.
    sent = {name: phase.inputs for name, phase in report.phases.items()}
    assert sent["frames"] >= FRAMES * 0.9 and sent["callbacks"] >= CALLBACKS * 0.8, sent
    assert sent["schemathesis"] >= SCHEMA_CASES * 0.8, sent
    frames = report.phases["frames"].outcomes
    assert frames["accepted"] and frames["error:bad_frame"] and frames["welcome"], frames
    statuses = report.phases["callbacks"].outcomes
    assert {"202", "401", "404", "413", "422"} <= set(statuses), statuses
    bystander_checks = [c for c in report.checks if c.subject.startswith("bystander")]
    assert len(bystander_checks) >= 2 * 8 and all(c.ok for c in bystander_checks), bystander_checks


# -- the fuzzer's own judgement, on inputs whose answer is known --------------------------------------------


def test_the_frame_oracle_follows_protocol_section_2() -> None:
    fresh = {"started": False, "ended": False, "valid_tokens": set()}
    started = {"started": True, "ended": False, "valid_tokens": set()}
    cases = [
        ('{"type": "hello", "shoe_size": 44}', fresh, {"welcome"}),
        ('{"type": "hello"}', started, {"error:bad_frame"}),
        ('{"type": "message", "id": "m", "text": "hi"}', fresh, {"error:not_started"}),
        ('{"type": "message", "id": "m", "text": "hi"}', started, {"accepted", "error:rate_limited"}),
        ('{"type": "message", "id": "m", "text": "a\\u0000b"}', started, {"error:bad_frame"}),
        ('{"type": "ack", "seq": 3}', started, {"none"}),
        ('{"type": "ping"}', fresh, {"pong"}),
        ('{"type": "shout"}', fresh, {"error:unknown_type"}),
        ('{"type": "resume", "resume_token": "x.y"}', fresh, {"error:invalid_token"}),
        ("[" * 2000, fresh, {"error:bad_frame"}),  # what docs/protocol.md §2 says; the edge closes 1011 (known bug)
        ("x" * (16 * 1024 + 1), fresh, {"error:too_large"}),
    ]
    for payload, state, answers in cases:
        assert expect(payload, False, **state).answers == answers, payload[:60]
    assert expect("x" * (64 * 1024 + 1), False, **fresh).close == 1009
    assert expect(b"\xff", True, **fresh).close == 1007
    assert expect('{"type": "end"}', False, **started).ends


def test_altered_tokens_always_differ_from_the_real_one() -> None:
    token = "0b6f0a9e-5d1c-4c1e-9d7a-2f1f6f3f6b1a.AAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjjKKK"
    assert all(mutate_token(token, n) != token for n in range(2_000))


def test_the_callback_oracle_and_the_known_bug_triggers() -> None:
    assert schema_accepts("messages", b'{"id": "a", "content": "b"}', "application/json")
    assert not schema_accepts("messages", b'{"id": "a", "content": ""}', "application/json")
    assert not schema_accepts("messages", b'{"id": "a", "content": "b"}', None)  # FastAPI: bytes, not JSON
    assert schema_accepts("close", None, None) and schema_accepts("close", b"null", "application/json")
    webhook = {"event": "message_created", "conversation_id": "c", "payload": {"id": "a", "content": "b"}}
    assert schema_accepts("webhook", json.dumps(webhook).encode(), "application/vnd.x+json")
    assert body_bug(b"\xff", "application/json") == "callback-400-unparseable-body"
    assert body_bug(b"9" * 5_000, "application/json") == "callback-400-unparseable-body"
    assert body_bug(b"\xff", "text/plain") is None and body_bug(b"{", "application/json") is None
    assert frame_bug("[" * 2_000, "embedded") == "edge-deep-json" and frame_bug("[" * 200, "embedded") is None
    assert frame_bug('{"type": "hello", "attributes": {"a": NaN}}', "postgres") == "edge-nonfinite-attributes"
    assert operator_bug({"offset": 2**63}, None) == "operator-int64-overflow"
    assert set(KNOWN_BUGS) >= {"edge-deep-json", "callback-400-unparseable-body", "webhook-payload-500"}
