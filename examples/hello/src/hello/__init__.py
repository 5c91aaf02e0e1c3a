"""The example app of examples/hello: a numpy computation plus the command-line arguments."""

GREETING_VAR = "HELLO_GREETING"
