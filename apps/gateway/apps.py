from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The memory gateway (docs/gateway.md): OpenAI- and Anthropic-compatible proxy routes
    under /proxy/ that recall the key's memories, inject them and forward to the upstream,
    and learn from the exchange into quarantine. A door: it calls the memories services,
    mounted in memoryweb/asgi.py."""

    name = "apps.gateway"
    label = "gateway"
    verbose_name = "Memory gateway"

    def ready(self) -> None:
        from apps.gateway.namespace_setting import (
            GatewaySettings,
            upstreams_of,
            validate_gateway_settings,
        )
        from apps.tenancy import namespace_settings

        # A namespace's gateway setting: the gateway's rule, stored on tenancy's row; only a
        # system admin changes its upstreams (they name server credentials).
        namespace_settings.register(namespace_settings.NamespaceSetting(
            "gateway", validate_gateway_settings, GatewaySettings,
            system_admin_part=upstreams_of))

        # Its learning tables are memory-derived data: erasure, stats and the certificate
        # checks reach them through the registry of stores.
        from apps.gateway.learning_stores import register_stores

        register_stores()

        # Its request traces (opt-in per namespace) hold memory ids and, at level
        # content, the query: a registered store too (apps/gateway/traces.py).
        from apps.gateway.traces import register_store

        register_store()

        # A learned fact's key is a keyed hash: encrypt_namespace recomputes it.
        from apps.gateway import fact_keys

        fact_keys.register()
