"""Running lexdesk as real processes and talking to it as customers do: the engine of the
integration tests, `lexdesk bench` and `lexdesk chaos`."""
