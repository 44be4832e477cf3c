from django.apps import AppConfig


class McpServerConfig(AppConfig):
    """The Model Context Protocol server agents use (``manage.py mcp_server``)."""

    name = "mcp_server"
    verbose_name = "MCP server"
