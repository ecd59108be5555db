"""Limit/offset pagination with the documented page-size cap."""

from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination as DRFLimitOffsetPagination


class LimitOffsetPagination(DRFLimitOffsetPagination):
    """``?limit=&offset=``; ``count``, ``next``, ``previous``, ``results``."""

    max_limit = settings.MEMORYWEB_LIMITS["max_page_size"]
