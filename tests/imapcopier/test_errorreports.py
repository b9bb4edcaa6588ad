"""The exception reporter filter (imapcopier/errorreports.py), named by settings.DEFAULT_EXCEPTION_REPORTER_FILTER."""

from __future__ import annotations

from django.views.debug import get_default_exception_reporter_filter

from imapcopier.errorreports import AlwaysSafeExceptionReporterFilter


def test_error_reports_hide_sensitive_values_with_debug_on_too(settings):
    settings.DEBUG = True
    reporter_filter = get_default_exception_reporter_filter()
    assert isinstance(reporter_filter, AlwaysSafeExceptionReporterFilter)
    assert reporter_filter.is_active(None)
    assert reporter_filter.cleanse_setting("PASSWORD", "imap-secret-1") != "imap-secret-1"
