"""devices.csv's rows, read off a fleet's summary columns one at a time.

Kept out of the compiled modules (simulator/compiled_build.py): a class
compiled by mypyc cannot be a `Sequence`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from iotdr.simulator.device_summary import DeviceSummary
from iotdr.simulator.fleet_summary import DeviceColumns


class DeviceRows(Sequence[DeviceSummary]):
    """The columns as devices.csv's rows, each made when it is read."""

    def __init__(self, columns: DeviceColumns) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns)

    @overload
    def __getitem__(self, index: int) -> DeviceSummary: ...
    @overload
    def __getitem__(self, index: slice) -> list[DeviceSummary]: ...
    def __getitem__(self, index: int | slice) -> DeviceSummary | list[DeviceSummary]:
        if isinstance(index, slice):
            return [self.columns.row(i) for i in range(len(self.columns))[index]]
        if index < 0:
            index += len(self.columns)
        if not 0 <= index < len(self.columns):
            raise IndexError(index)
        return self.columns.row(index)

    def __iter__(self) -> Iterator[DeviceSummary]:
        columns = self.columns
        return (columns.row(i) for i in range(len(columns)))
