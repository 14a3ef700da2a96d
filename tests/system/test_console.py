"""The web console in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``,
never a downloaded browser) against a real `plait serve --console-address` and `plait worker`.

It launches a workflow from the generated form, watches a dynamic fan-out grow, opens a failed
node's traceback, terminates an execution, pages into a 10,000-node fan-out, uses a token, and
opens a live 100,000-node execution and a merge sort 12 levels deep within two seconds each.
With ``PLAIT_SCREENSHOTS=DIR`` the screenshots of the main pages go to DIR (the README's come
from ``PLAIT_SCREENSHOTS=docs/console``).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plait import Client, ExecutionFailedError
from plaitidl.core.v1 import execution_pb2, identifier_pb2
from playwright.sync_api import Browser, Page, expect, sync_playwright

from examples.merge_sort import merge_sort
from tests.support.servers import EngineProcess, start_engine, start_worker
from tests.workflows import console_flows

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling home, which this machine's
# closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FLOWS = "tests.workflows.console_flows"
TOKEN = "browser-test-token-0123456789"
OPEN_BUDGET = 2.0  # seconds from navigation to the graph on screen
TIMES = "\u00d7"  # the console writes "square \u00d710,000"
NEXT = "next \u203a"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProcess, str]]:
    """An engine with a console, and a worker serving the console's test workflows."""
    tmp = tmp_path_factory.mktemp("console")
    engine = start_engine(tmp, "--console-address", "127.0.0.1:0")
    worker = start_worker(
        engine.address, FLOWS, "examples.merge_sort", extra_args=("--queue", "default"),
        log=tmp / "worker.log",
    )  # fmt: skip
    try:
        _wait_registered(engine.address, f"{FLOWS}.greet")
        yield engine, f"http://{engine.console_address()}"
    finally:
        _stop(worker)
        engine.stop()


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM; SIGKILL when a task it still runs (a terminated sleep) keeps it past 10 s."""
    worker.terminate()
    try:
        worker.wait(10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.set_default_timeout(20_000)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield p
    finally:
        context.close()
    assert errors == [], f"the page raised: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("PLAIT_SCREENSHOTS")
    folder = Path(where) if where else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait_registered(address: str, workflow: str, timeout: float = 30.0) -> None:
    """Wait until the worker registered `workflow` (it does on start)."""
    deadline = time.monotonic() + timeout
    ident = identifier_pb2.Identifier(
        resource_type=identifier_pb2.RESOURCE_TYPE_WORKFLOW, name=workflow
    )
    with Client(address) as client:
        while True:
            try:
                client.get_workflow(ident)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _start(address: str, workflow: Any, **inputs: object) -> str:
    """Start a workflow (registered as the worker registered it); returns the execution's name."""
    with Client(address) as client:
        return client.execute(workflow, inputs).id.name


def test_launch_a_workflow_from_its_form(
    served: tuple[EngineProcess, str], page: Page, shots: Path
) -> None:
    _, url = served
    page.goto(f"{url}/workflows")
    page.get_by_role("link", name=f"{FLOWS}.greet").click()
    form = page.locator("form.launch")
    expect(form.locator("#input-times")).to_have_value("2")  # the workflow's default
    page.fill("#input-name", "plait")
    page.fill("#input-times", "three")
    form.get_by_role("button", name="Launch").click()
    expect(form.locator(".error-text")).to_contain_text("times: expected an integer")
    page.fill("#input-times", "3")
    page.select_option("#input-loud", "true")
    page.fill("#input-labels", "team=console")
    page.screenshot(path=shots / "launch-form.png")
    form.get_by_role("button", name="Launch").click()
    page.wait_for_url(re.compile(r"/executions/default/development/x[0-9a-f]+$"))
    expect(page.locator("[data-execution-phase]")).to_have_text("succeeded")
    expect(page.locator(".data")).to_contain_text('"HELLO PLAIT HELLO PLAIT HELLO PLAIT"')
    expect(page.locator(".execution-head")).to_contain_text("team=console")


def test_watch_a_dynamic_fan_out_grow(served: tuple[EngineProcess, str], page: Page) -> None:
    engine, url = served
    name = _start(engine.address, console_flows.growing, n=24, seconds=0.6)
    page.goto(f"{url}/executions/default/development/{name}")
    group = page.locator("[data-group=slow_square]")
    group.wait_for()  # the generator's nodes appear inside it as they are created
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = group.locator("text.sub").text_content() or ""
        done = int(text.split(" done")[0].replace(",", ""))
        if not seen or seen[-1] != done:
            seen.append(done)
        if done == 24:
            break
        time.sleep(0.1)
    assert seen == sorted(seen) and seen[-1] == 24
    assert any(0 < d < 24 for d in seen), f"never saw it part-way: {seen}"
    expect(page.locator("[data-execution-phase]")).to_have_text("succeeded")


def test_open_a_failed_node_s_traceback(
    served: tuple[EngineProcess, str], page: Page, shots: Path
) -> None:
    engine, url = served
    with Client(engine.address) as client:
        run = client.execute(console_flows.failing, {"x": 7})
        with pytest.raises(ExecutionFailedError):
            client.wait(run)
    page.goto(f"{url}/executions/default/development/{run.id.name}")
    expect(page.locator("[data-execution-phase]")).to_have_text("failed")
    page.locator("[data-failed-node]").first.click()
    expect(page.locator("[data-node-phase]")).to_have_text("failed")
    traceback = page.locator("[data-traceback]")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("ValueError: cannot handle 7")
    expect(page.locator("[data-attempt='1']")).to_contain_text("ValueError")
    expect(page.locator(".data")).to_contain_text("7")  # its input, by type
    page.screenshot(path=shots / "node-traceback.png", full_page=True)


def test_terminate_an_execution(served: tuple[EngineProcess, str], page: Page) -> None:
    engine, url = served
    name = _start(engine.address, console_flows.long_running, seconds=120.0)
    page.goto(f"{url}/executions/default/development/{name}")
    expect(page.locator("g.gnode[data-phase=running]")).to_have_count(1)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Terminate").click()
    expect(page.locator("[data-execution-phase]")).to_have_text("aborted")
    expect(page.locator(".execution-error")).to_contain_text("terminated from the console")
    with Client(engine.address) as client:
        assert client.get(name).phase == execution_pb2.EXECUTION_PHASE_ABORTED


def test_page_into_a_10000_fan_out(
    served: tuple[EngineProcess, str], page: Page, shots: Path
) -> None:
    engine, url = served
    with Client(engine.address) as client:
        run = client.execute(console_flows.big_fan_out, {"n": 10_000})
        client.wait(run, timeout=240)
    page.goto(f"{url}/executions/default/development/{run.id.name}")
    group = page.locator("[data-group=square]")
    expect(group.locator("text.name")).to_have_text(f"square {TIMES}10,000")
    group.click()
    panel = page.locator("[data-panel=group]")
    rows = panel.locator("tr[data-member]")
    expect(rows).to_have_count(50)
    first = set(rows.evaluate_all("rs => rs.map(r => r.dataset.member)"))
    panel.get_by_role("button", name=NEXT).click()
    expect(panel.locator("[data-page]")).to_have_text("page 2")
    expect(rows.first).not_to_have_attribute("data-member", sorted(first)[0])
    second = set(rows.evaluate_all("rs => rs.map(r => r.dataset.member)"))
    assert len(second) == 50 and not first & second
    panel.locator("[data-phase-filter=succeeded]").click()
    expect(panel.locator("[data-page]")).to_have_text("page 1")
    expect(rows).to_have_count(50)
    page.screenshot(path=shots / "fan-out-group.png")
    rows.first.locator("a").click()
    expect(page.locator("[data-node-phase]")).to_have_text("succeeded")


def test_a_token_from_the_page_is_sent(browser: Browser, tmp_path: Path) -> None:
    engine = start_engine(tmp_path, "--console-address", "127.0.0.1:0", "--token", TOKEN)
    context = browser.new_context()
    try:
        p = context.new_page()
        p.goto(f"http://{engine.console_address()}/executions")
        expect(p.locator(".error-text")).to_contain_text("set a token")
        p.fill("input[name=token]", TOKEN)
        p.get_by_role("button", name="Use").click()
        expect(p.get_by_text("No executions yet")).to_be_visible()
        assert p.evaluate("sessionStorage.getItem('plait.token')") == TOKEN
    finally:
        context.close()
        assert engine.stop() == 0


def _open_time(page: Page, url: str) -> float:
    start = time.monotonic()
    page.goto(url)
    page.locator("svg.graph[data-ready=yes] .gnode").first.wait_for()
    return time.monotonic() - start


def test_a_100000_node_execution_and_a_12_level_merge_sort_open_fast(
    browser: Browser, tmp_path: Path, shots: Path
) -> None:
    engine = start_engine(tmp_path, "--console-address", "127.0.0.1:0")
    worker = start_worker(
        engine.address, FLOWS, "examples.merge_sort",
        extra_args=("--queue", "default", "--slots", "8"), log=tmp_path / "worker.log",
    )  # fmt: skip
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        _wait_registered(engine.address, f"{FLOWS}.huge")
        rng = random.Random(12)
        numbers = [rng.randrange(100_000) for _ in range(4096)]
        with Client(engine.address) as client:
            huge = client.execute(console_flows.huge, {"groups": 10, "n": 10_000}, name="huge")
            sort = client.execute(
                merge_sort,
                {"numbers": numbers, "numbers_count": 4096, "run_local_at_count": 1},
                name="sort12",
            )
            assert client.wait(sort, timeout=600) == sorted(numbers)
            deadline = time.monotonic() + 300
            while client.get(huge).nodes.total < 100_011:
                assert time.monotonic() < deadline, "the 100,000 nodes were not created"
                time.sleep(0.5)
            # The engine commits their dispatches (100,000 events) for a few more seconds: the
            # measure is of the console, not of an engine busy with that.
            last = -1
            while (seq := client.get(huge).last_sequence) != last:
                assert time.monotonic() < deadline, "the dispatches did not settle"
                last = seq
                time.sleep(1.5)
        page = context.new_page()
        page.goto(f"http://{engine.console_address()}/")  # the assets, once
        base = f"http://{engine.console_address()}/executions/default/development"
        huge_s = _open_time(page, f"{base}/huge")
        expect(page.locator("[data-group=parked]").first.locator("text.name")).to_have_text(
            f"parked {TIMES}10,000"
        )
        page.screenshot(path=shots / "execution-100000-nodes.png")
        start = time.monotonic()
        page.locator("[data-group=parked]").first.click()
        expect(page.locator("[data-panel=group] tr[data-member]")).to_have_count(50)
        panel_s = time.monotonic() - start
        sort_s = _open_time(page, f"{base}/sort12")
        expect(page.locator("g.gnode[data-node-id='n0/n0-else/n1']")).to_be_visible()
        page.screenshot(path=shots / "execution-merge-sort.png")
        # Level by level, 12 recursions down.
        level = "/".join(["n0/n0-else/n1"] * 11) + "/n0"
        deep_s = _open_time(page, f"{base}/sort12?level={level}")
        expect(page.locator("nav.crumbs")).to_contain_text("levels down")
        print(
            f"\nconsole open times: 100,011 nodes {huge_s:.2f}s (group page {panel_s:.2f}s), "
            f"merge sort 12 levels {sort_s:.2f}s, its deepest level {deep_s:.2f}s"
        )
        assert huge_s < OPEN_BUDGET and sort_s < OPEN_BUDGET and deep_s < OPEN_BUDGET
        assert panel_s < OPEN_BUDGET
    finally:
        context.close()
        with Client(engine.address) as client:
            client.terminate("huge")
        _stop(worker)
        engine.stop(60)


def test_screenshots_of_the_lists(
    served: tuple[EngineProcess, str], page: Page, shots: Path
) -> None:
    engine, url = served
    with Client(engine.address) as client:
        merge = client.execute(merge_sort, {"numbers": [5, 3, 9, 1, 7, 2], "numbers_count": 6})
        client.wait(merge)
    page.goto(f"{url}/executions")
    expect(page.locator(f"tr[data-execution='{merge.id.name}']")).to_contain_text("succeeded")
    page.screenshot(path=shots / "executions.png")
    page.goto(f"{url}/workflows")
    expect(page.locator(f"tr[data-entity='{FLOWS}.greet']")).to_contain_text("console_flows.greet")
    expect(page.locator("tr[data-entity='examples.merge_sort.merge_sort']")).to_be_visible()
    page.screenshot(path=shots / "workflows.png")
