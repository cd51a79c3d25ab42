import pytest
import torch

from benchmarks.common import cpu_peak_gb, table


def test_cpu_peak_memory_sees_a_known_allocation():
    peak = cpu_peak_gb(lambda: torch.ones(50_000_000))  # 0.186 GiB of float32, freed on return
    if peak is None:
        pytest.skip("no /proc/self/clear_refs or glibc here")
    assert 0.17 < peak < 0.3


def test_table_formats_rows():
    assert table([{"size": 64, "fwd s": 0.12345}]).splitlines() == ["| size | fwd s |", "|---|---|", "| 64 | 0.1235 |"]
