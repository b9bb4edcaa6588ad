"""The exception reporter filter of error pages and reports (settings.DEFAULT_EXCEPTION_REPORTER_FILTER).

Apart from imapcopier/logging.py so that configuring logging does not import Django's web stack
(django.views): `manage.py copymailbox` configures logging without setting Django up (imapcopier.boot).
"""

from __future__ import annotations

from django.views.debug import SafeExceptionReporterFilter


class AlwaysSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Hide sensitive variables and POST fields on error pages and reports with DEBUG on, too.

    Django's filter only works with DEBUG off; an operator who turns DEBUG on to chase a problem
    must not see (or screenshot) an IMAP password on the technical error page.
    """

    def is_active(self, request: object) -> bool:
        return True
