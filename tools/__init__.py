"""lexdesk's test tools, beside the product and not part of it: the benchmark (`lexdesk bench`), the
fault suite (`lexdesk chaos`), the fuzzer (`lexdesk fuzz`) and the harness they and the integration
tests share (the system as real processes, a scripted customer).

They need the `tools` extra (`pip install -e '.[tools]'`). The product never imports this package;
`lexdesk/cli.py` loads a tool's command only when that command is asked for.
"""
