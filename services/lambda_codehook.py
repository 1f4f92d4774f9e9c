"""The Lex V2 fulfillment code hook as an AWS Lambda handler (`services.lambda_codehook.handler`): the
seed deployment's Lambda, with lexdesk behind it. It reads the same LEXDESK_* settings as every other
process (the database, the broker and LEXDESK_RESUME_TOKEN_SECRET must be reachable from the Lambda)
and answers exactly what `POST /lex/code-hook` answers."""

from __future__ import annotations

from typing import Any

from shared.codehook import CodeHookEvent, answer
from shared.settings import get_settings


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    settings = get_settings()
    settings.require("resume_token_secret")
    # An event Lex would never send raises (pydantic's ValidationError names the field): Lambda reports
    # it as a failed invocation, which Lex shows as an error, rather than fulfilling something wrong.
    return answer(settings, CodeHookEvent.model_validate(event))
