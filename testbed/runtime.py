"""What every testbed operation needs: the programs, the namespace, the files."""

from collections.abc import Sequence
from dataclasses import dataclass

from iotdr.testbed import netns
from iotdr.testbed.layout import Layout
from iotdr.testbed.prerequisites import Tools


@dataclass(frozen=True, slots=True)
class Runtime:
    tools: Tools
    netns: str
    netns_inode: int  # identifies the namespace even after its name is deleted
    layout: Layout

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return netns.exec_argv(self.tools.ip, self.netns, argv)
