"""`serve/protocol.py` subclasses uvicorn's private `HttpToolsProtocol` (uvicorn has no public
setting for header and body deadlines). This test reads the uvicorn installed and fails loudly,
naming what moved, when a release changes what the subclass relies on; pyproject.toml pins
the uvicorn versions it was checked with. The deadlines' behaviour is tested end to end in
tests/test_serve_hostile.py."""

from __future__ import annotations

import inspect

from packaging.version import Version

# What DeadlineProtocol overrides or reads.
HOOKS = ("connection_made", "connection_lost", "on_message_begin", "on_headers_complete",
         "on_message_complete", "on_response_complete", "shutdown")
PROTOCOL_ATTRIBUTES = ("self.cycle", "self.transport", "self.loop")
CYCLE_ATTRIBUTES = ("response_complete", "response_started", "disconnected",
                    "message_event", "more_body")
CHECKED = (Version("0.30"), Version("0.56"))  # the range pyproject.toml allows


def test_uvicorn_still_has_what_the_deadline_protocol_relies_on():
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

    assert CHECKED[0] <= Version(uvicorn.__version__) < CHECKED[1], (
        f"uvicorn {uvicorn.__version__} is outside the checked range {CHECKED}: re-check "
        "serve/protocol.py against it, then widen the pin in pyproject.toml")
    missing = [hook for hook in HOOKS if not callable(getattr(HttpToolsProtocol, hook, None))]
    source = inspect.getsource(HttpToolsProtocol.__init__)
    missing += [a for a in PROTOCOL_ATTRIBUTES if a not in source]
    cycle_source = inspect.getsource(RequestResponseCycle.__init__)
    missing += [f"cycle.{a}" for a in CYCLE_ATTRIBUTES if f"self.{a}" not in cycle_source]
    assert not missing, f"uvicorn changed HttpToolsProtocol: {missing} gone (serve/protocol.py)"


def test_the_pin_in_pyproject_is_the_checked_range():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'"uvicorn>={CHECKED[0]},<{CHECKED[1]}"' in text
