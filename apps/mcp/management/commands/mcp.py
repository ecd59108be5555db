import os
import sys

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Serve MemoryWeb's memory tools (store, recall, update, forget, list_recent) over "
            "MCP on stdio, for Claude Code, Codex, Cursor and other MCP clients. The API key "
            "comes from MEMORYWEB_API_KEY. Embedded by default: this process calls the "
            "services, or, while a server runs on the same embedded data directory, hands "
            "each call to it through its admin socket (the server checks the key at every "
            "call). With --server-url it is a thin proxy to a server's REST API.")

    def add_arguments(self, parser):
        parser.add_argument("--server-url", help="proxy to this MemoryWeb server, e.g. "
                            "http://127.0.0.1:8000")

    def handle(self, server_url=None, **options):
        from mcp.server.mcpserver.exceptions import ToolError

        from apps.mcp.backends import RestBackend, ServiceBackend
        from apps.mcp.server import build_server

        key = os.environ.get("MEMORYWEB_API_KEY", "").strip()
        if not key:
            raise CommandError("set MEMORYWEB_API_KEY to the agent's API key.")
        if server_url:
            if not server_url.startswith(("http://", "https://")):
                raise CommandError("--server-url must be an http:// or https:// address.")
            proxy = RestBackend(server_url, key)

            def backend(ctx):
                return proxy
        else:
            from apps.mcp.backends import ServerBackend
            from apps.mcp.http import principal_for_key
            from apps.ops.control_client import ControlClient

            if principal_for_key(key) is None:
                raise CommandError("MEMORYWEB_API_KEY is not a valid, active key.")
            server = ControlClient()

            def backend(ctx):
                # While the server runs on this data directory, it does the call (it owns
                # the embedded store) and checks the key itself; else this process does.
                if server.available():
                    return ServerBackend(server, key)
                # Checked at every call, as every other door does: a key revoked or
                # expired while the agent runs stops working at once, and the namespace
                # (archived or not) is read fresh.
                principal = principal_for_key(key)
                if principal is None:
                    raise ToolError("authentication_failed: Invalid, expired or revoked API key.")
                return ServiceBackend(principal)
        # stdout carries the protocol: everything else goes to stderr.
        sys.stdout.flush()
        build_server(backend).run(transport="stdio")
