"""Settings fail at start-up with a message that names the variable."""

from __future__ import annotations

import pytest

from srp_bundle.errors import ConfigurationError
from srp_bundle.settings import (
    REQUIRED_BY_FUNCTION,
    DerivativeSpec,
    load_settings,
    parse_derivative_specs,
)

COMPLETE = {
    "GOOGLE_CLOUD_PROJECT": "demo",
    "SRP_API_KEY": "key",
    "WEBHOOK_URL": "https://hooks.example/ingest",
    "WEBHOOK_SECRET": "0123456789abcdef0123",
    "EVENTS_TOPIC": "render-events",
    "RENDERS_BUCKET": "renders",
    "DERIVATIVES_BUCKET": "derivatives",
}


@pytest.mark.parametrize("function_name", sorted(REQUIRED_BY_FUNCTION))
def test_every_function_starts_with_a_complete_environment(function_name: str) -> None:
    settings = load_settings(function_name, COMPLETE)
    assert settings.project_id == "demo"
    assert settings.srp_api_url == "https://srp.snark.art"
    assert settings.tasks_collection == "srp_tasks"


@pytest.mark.parametrize(
    ("function_name", "variable"),
    [(name, variable) for name, needed in REQUIRED_BY_FUNCTION.items() for variable in needed],
)
def test_a_missing_variable_is_named(function_name: str, variable: str) -> None:
    environ = {k: v for k, v in COMPLETE.items() if k != variable}
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(function_name, environ)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SRP_API_URL", "ftp://srp"),
        ("WEBHOOK_URL", "not a url"),
        ("EVENTS_TOPIC", "has spaces"),
        ("WEBHOOK_SECRET", "short"),
        ("WEBHOOK_SECRET_PREVIOUS", "fifteen-chars.."),
        ("ALLOW_LOCAL_HTTP_CALLBACKS", "maybe"),
        ("DERIVATIVE_SPECS", "512:gif"),
        ("DERIVATIVE_SPECS", "huge:webp"),
        ("MAX_REQUEST_AGE_SECONDS", "-1"),
        ("CONFIRM_TERMINAL_STATUS", "maybe"),
        ("MEDIA_MEMORY_BYTES", "1G"),
        ("MAX_ANIMATION_PIXELS", "0"),
        ("FUNCTION_TIMEOUT_SECONDS", "5m"),
    ],
)
def test_a_malformed_value_is_named(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(None, {**COMPLETE, variable: value})


def test_the_previous_webhook_secret_has_the_same_length_rule() -> None:
    settings = load_settings(None, {**COMPLETE, "WEBHOOK_SECRET_PREVIOUS": "x" * 16})
    assert settings.webhook_secret_previous == "x" * 16
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET_PREVIOUS must be at least 16"):
        load_settings(None, {**COMPLETE, "WEBHOOK_SECRET_PREVIOUS": "x" * 15})


def test_local_http_callbacks_are_refused_unless_local_development_says_so() -> None:
    assert load_settings(None, COMPLETE).allow_local_http_callbacks is False
    allowed = load_settings(None, {**COMPLETE, "ALLOW_LOCAL_HTTP_CALLBACKS": "true"})
    assert allowed.allow_local_http_callbacks is True


def test_producer_callbacks_are_forwarded_unless_the_deployment_turns_it_off() -> None:
    assert load_settings(None, COMPLETE).forward_producer_callbacks is True
    off = load_settings(None, {**COMPLETE, "FORWARD_PRODUCER_CALLBACKS": "false"})
    assert off.forward_producer_callbacks is False
    with pytest.raises(ConfigurationError, match="FORWARD_PRODUCER_CALLBACKS"):
        load_settings(None, {**COMPLETE, "FORWARD_PRODUCER_CALLBACKS": "sometimes"})


def test_derivative_specs_parse_sizes_and_formats() -> None:
    assert parse_derivative_specs("512:webp, 256:WEBP,1024:png,64:jpg,512:webp") == (
        DerivativeSpec(512, "webp"),
        DerivativeSpec(256, "webp"),
        DerivativeSpec(1024, "png"),
        DerivativeSpec(64, "jpeg"),
    )


def test_secrets_stay_out_of_repr() -> None:
    text = repr(load_settings(None, COMPLETE))
    assert "0123456789abcdef0123" not in text
    assert "key'" not in text


def test_the_media_budget_must_fit_inside_the_function_timeout() -> None:
    fits = {**COMPLETE, "MEDIA_TIMEOUT_SECONDS": "240", "FUNCTION_TIMEOUT_SECONDS": "300"}
    assert load_settings("postprocess_render", fits).media_timeout_seconds == 240

    too_long = {**fits, "MEDIA_TIMEOUT_SECONDS": "241"}
    with pytest.raises(ConfigurationError, match=r"MEDIA_TIMEOUT_SECONDS \(241\) plus a margin"):
        load_settings("postprocess_render", too_long)
    # Without FUNCTION_TIMEOUT_SECONDS (tests, the local stack) the budget stands alone.
    alone = {k: v for k, v in too_long.items() if k != "FUNCTION_TIMEOUT_SECONDS"}
    assert load_settings("postprocess_render", alone).media_timeout_seconds == 241
