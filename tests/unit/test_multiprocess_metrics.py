"""The API's multiprocess metrics, with two worker processes played in one interpreter: each
writes through its own prometheus-client value class (its own files, as its own pid would),
and either one's scrape answers for both."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from phoenix_resources.observability import Metrics
from phoenix_resources.observability.multiprocess import MULTIPROC_ENV, forget, multiprocess_dir

pytestmark = pytest.mark.unit

ROUTE = "/api/v1/resources/{id}"


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    yield tmp_path
    values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]


def _worker(pid: int, monkeypatch: pytest.MonkeyPatch) -> Metrics:
    """The metrics of one API worker process ``pid``: everything it creates from now on
    writes to its own files."""
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: pid))
    metrics = Metrics(component="api")
    assert metrics.multiprocess
    return metrics


def _samples(text: bytes) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value)
            for f in text_string_to_metric_families(text.decode()) for s in f.samples]


def _values(samples: list[tuple[str, dict[str, str], float]], name: str,
            **labels: str) -> list[float]:
    return [v for n, ls, v in samples
            if n == name and all(ls.get(k) == x for k, x in labels.items())]


def test_any_workers_scrape_answers_for_every_worker(directory: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = _worker(101, monkeypatch)
    first.http_requests.labels(ROUTE, "200").inc(3)
    first.http_seconds.labels(ROUTE).observe(0.002)
    first.exposition()  # its process figures are copied at its own scrapes too
    second = _worker(102, monkeypatch)
    second.http_requests.labels(ROUTE, "200").inc(4)
    second.http_seconds.labels(ROUTE).observe(0.002)
    second.set_readiness("api", lambda: True)

    scraped = _samples(second.exposition())
    # Counters and histograms: the sum over both workers.
    assert _values(scraped, "phoenix_http_requests_total", route=ROUTE, status="200") == [7]
    assert _values(scraped, "phoenix_http_request_seconds_count", route=ROUTE) == [2]
    # CPU seconds and garbage collections add up; memory, descriptors: one series per worker.
    assert len(_values(scraped, "process_cpu_seconds_total")) == 1
    assert _values(scraped, "process_cpu_seconds_total")[0] > 0
    assert {"0", "1", "2"} == {ls["generation"] for n, ls, _ in scraped
                               if n == "python_gc_collections_total"}
    assert {ls["pid"] for n, ls, _ in scraped if n == "process_resident_memory_bytes"} == {
        "101", "102"}
    assert all(v > 0 for v in _values(scraped, "process_resident_memory_bytes"))
    assert {ls["pid"] for n, ls, _ in scraped if n == "process_open_fds"} == {"101", "102"}
    assert len(_values(scraped, "python_info")) == 2
    # What the files do not hold comes from the process that answers.
    assert _values(scraped, "phoenix_ready", component="api") == [1]
    assert _values(scraped, "phoenix_build_info", component="api") == [1]

    forget(101)  # the first worker exited: its gauges go, its counts stay
    scraped = _samples(second.exposition())
    assert {ls["pid"] for n, ls, _ in scraped if n == "process_resident_memory_bytes"} == {
        "102"}
    assert _values(scraped, "phoenix_http_requests_total", route=ROUTE, status="200") == [7]


def test_copying_a_counter_twice_adds_only_what_it_grew(directory: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = _worker(103, monkeypatch)

    def youngest() -> float:
        (value,) = _values(_samples(metrics.exposition()), "python_gc_collections_total",
                           generation="0")
        return value

    gc.disable()  # only the collections this test asks for
    try:
        before = youngest()
        assert youngest() == before
        gc.collect(0)
        gc.collect(0)
        assert youngest() == before + 2
        assert youngest() == before + 2
    finally:
        gc.enable()


def test_the_directory_is_fresh_and_removed_or_emptied_and_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_dir() as made:
        assert Path(made).is_dir()
        assert not list(Path(made).iterdir())
        (Path(made) / "counter_1.db").write_bytes(b"")
    assert not Path(made).exists()
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_7.db").write_bytes(b"")
    (given / "notes.txt").write_text("kept")
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    with multiprocess_dir() as used:
        assert used == str(given)
        assert [p.name for p in given.iterdir()] == ["notes.txt"]
    assert given.is_dir()
