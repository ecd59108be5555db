import os
import sys

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Serve MemoryWeb's memory tools (store, recall, update, forget, list_recent) over "
            "MCP on stdio, for Claude Code, Codex, Cursor and other MCP clients. The API key "
            "comes from MEMORYWEB_API_KEY. Embedded by default (this process calls the "
            "services; with the embedded Chroma the server must not be running on the same "
            "data directory); with --server-url it is a thin proxy to a running server's REST "
            "API.")

    def add_arguments(self, parser):
        parser.add_argument("--server-url", help="proxy to this MemoryWeb server, e.g. "
                            "http://127.0.0.1:8000")

    def handle(self, server_url=None, **options):
        from apps.mcp.backends import RestBackend, ServiceBackend
        from apps.mcp.server import build_server

        key = os.environ.get("MEMORYWEB_API_KEY", "").strip()
        if not key:
            raise CommandError("set MEMORYWEB_API_KEY to the agent's API key.")
        if server_url:
            backend = RestBackend(server_url, key)
        else:
            from apps.tenancy.principal import Principal
            from apps.tenancy.services import authenticate_key

            found = authenticate_key(key)
            if found is None:
                raise CommandError("MEMORYWEB_API_KEY is not a valid, active key.")
            backend = ServiceBackend(Principal.for_key(found))
        # stdout carries the protocol: everything else goes to stderr.
        sys.stdout.flush()
        build_server(lambda ctx: backend).run(transport="stdio")
