"""The timeline's service layer, one import for every door (REST, MCP, the command, the
job): build a tree, browse it, open a node, expand a grip."""

from apps.timeline.build import ACTOR, BuildReport, build
from apps.timeline.reading import ExpandedGrip, OpenedNode, browse, expand_grip, open_node

__all__ = ["ACTOR", "BuildReport", "ExpandedGrip", "OpenedNode", "browse", "build",
           "expand_grip", "open_node"]
