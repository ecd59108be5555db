from django.apps import AppConfig


class McpConfig(AppConfig):
    """MCP: the memory tools for agents (Claude Code, Codex, Cursor) over stdio and HTTP."""

    name = "apps.mcp"
    label = "mcp"
    verbose_name = "MCP"
