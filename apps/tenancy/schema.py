"""OpenAPI description of the bearer-key authentication (drf-spectacular extension)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.tenancy.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`mw_live_…` or `mw_read_…`) created with "
            "`manage.py create_api_key`; shown once.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "apps.tenancy.authentication.PrincipalSessionAuthentication"
    name = "Session"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
