"""Real boto3 clients for the Lex emulator: fake credentials (botocore signs; the emulator checks no
signature) and no botocore retries, so a test sees each answer as it came."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def lex_client(url: str, service: str = "lexv2-runtime", **config: Any) -> Any:
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}, **config))
