"""The player page in a real browser: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver, plays a spoken clip's H.264 rendition through hls.js from the session's Serve app, with
its subtitles, trickplay previews and the viewer's recommendations. Plus the page's routes and the
catalog listing it is built on, over plain HTTP. The page's QoE beacons must land in
playback_beacons (a startup time, the rendition it played).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from models.lake.schemas import ALL_TABLES
from models.lake.tables import read_table, upsert
from models.media.hls import SubtitleTrack, package_hls
from models.media.ladder import LadderConfig, RungConfig, plan
from models.media.probe import probe
from models.media.samples import SPEECH, speech_clip
from models.media.thumbnails import trickplay
from models.media.webvtt import timestamp
from models.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# DESIGN §7: the flags that work here (no sandbox as root, no GPU, no background traffic).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,900",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SPEECH_ITEM = "00000000000000b0"
TITLE = "Weather Report"
SPOKEN = SPEECH["speech_weather.mp4"]
# One rung in both codecs: the web master Chromium gets lists the H.264 only, and it never fetches HEVC.
LADDER = LadderConfig(
    rungs=[RungConfig(name="240p", height=240, max_fps=30, bitrates_kbps={"h264": 400, "hevc": 300})],
    codecs=["h264", "hevc"],
    segment_s=2.0,
)
WAIT_S = 30.0


def put(settings: Settings, name: str, rows: list[dict[str, Any]]) -> None:
    columns = ALL_TABLES[name].schema.names
    upsert(settings, name, [{column: row.get(column) for column in columns} for row in rows])


@pytest.fixture(scope="module")
def speech_item(sample_lake: Any, client: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real package published into the running app's lake: a spoken sentence over real video,
    encoded to H.264 and HEVC with AAC audio, its words as English WebVTT, and trickplay sprites."""
    settings: Settings = sample_lake.settings
    work = tmp_path_factory.mktemp("player")
    source = work / "speech.mp4"
    speech_clip(SPOKEN, source, work)
    probed = probe(source)
    vtt = work / "en.vtt"
    vtt.write_text(f"WEBVTT\n\n00:00.000 --> {timestamp(probed.duration_s)}\n{SPOKEN}\n")
    folder = settings.packaged / SPEECH_ITEM
    package = package_hls(
        source, probed, folder / "hls", plan(probed, LADDER), LADDER, timeout_s=300, hwaccel="none",
        subtitles=[SubtitleTrack("en", "English", vtt)],
    )  # fmt: skip
    tiles = trickplay(source, probed, folder / "images" / "trickplay", timeout_s=120, interval_s=1.0)
    renditions = [
        {
            "rung": r.rung,
            "codec": r.codec,
            "width": r.width,
            "height": r.height,
            "bitrate": r.bitrate,
            "playlist_path": f"{SPEECH_ITEM}/hls/{r.playlist.name}",
        }
        for r in package.published
        if r.kind == "video"
    ]
    assert {r["codec"] for r in renditions} == {"h264", "hevc"}
    row = {
        "media_id": SPEECH_ITEM,
        "title": TITLE,
        "description": "a weather forecast, spoken",
        "duration_s": probed.duration_s,
        "width": probed.width,
        "height": probed.height,
        "master_playlist": f"{SPEECH_ITEM}/hls/master.m3u8",
        "renditions": renditions,
        "subtitles": [{"lang": "en", "format": "webvtt", "path": f"{SPEECH_ITEM}/subtitles/en.vtt"}],
    }
    put(settings, "api_catalog", [row])
    put(
        settings,
        "thumbnails",
        [
            {
                "media_id": SPEECH_ITEM,
                "kind": "trickplay",
                "path": f"{SPEECH_ITEM}/images/trickplay/{tiles.vtt.name}",
                "width": tiles.tile_width,
                "height": tiles.tile_height,
                "time_s": tiles.interval_s,
            }
        ],
    )
    deadline = time.monotonic() + WAIT_S
    headers = sample_lake.auth("player-setup")
    while time.monotonic() < deadline:  # the replicas pick up new versions every reload interval
        response = client.get(f"/media/{SPEECH_ITEM}/playback", headers=headers)
        if response.status_code == 200 and response.json()["trickplay"]:
            return SPEECH_ITEM
        time.sleep(0.5)
    raise TimeoutError(f"{SPEECH_ITEM} was not served within {WAIT_S} s")


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium through Debian's chromedriver: a given driver path means Selenium Manager
    never runs, so nothing is downloaded."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, script: str, what: str) -> Any:
    """Polls a JavaScript expression until it is truthy; its value."""
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(
        lambda d: d.execute_script(f"return {script}"), message=f"timed out waiting for {what}"
    )


def test_the_page_and_its_scripts_are_served_on_the_apis_origin(client: httpx.Client) -> None:
    for path in ("/", "/player"):
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script src="/static/hls.min.js"' in page.text
    hls_js = client.get("/static/hls.min.js")
    assert hls_js.status_code == 200 and hls_js.headers["content-type"].startswith("text/javascript")
    assert "isSupported" in hls_js.text
    assert client.get("/static/player.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.py").status_code == 404
    assert not {"/", "/player", "/static/{name}"} & set(client.get("/openapi.json").json()["paths"])


def test_media_lists_the_catalog_by_title_a_page_at_a_time(client: httpx.Client, sample_lake: Any) -> None:
    headers = sample_lake.auth("lister")
    everything = client.get("/media", headers=headers, params={"limit": 500}).json()
    titles = [item["title"] for item in everything["items"]]
    assert titles == sorted(titles) and everything["total"] == len(titles)
    listed = {item["media_id"]: item for item in everything["items"]}
    assert set(sample_lake.media) <= set(listed) and sample_lake.not_in_catalog not in listed
    first = sample_lake.media[0]
    assert listed[first]["poster_url"] == f"/images/{first}/poster.jpg"
    page = client.get("/media", headers=headers, params={"limit": 2, "offset": 1}).json()
    assert [item["media_id"] for item in page["items"]] == list(listed)[1:3]
    beyond = client.get("/media", headers=headers, params={"offset": 10**22})  # past sys.maxsize
    assert beyond.status_code == 200 and beyond.json()["items"] == []
    assert client.get("/media").status_code == 401
    assert client.get("/media", headers=headers, params={"limit": 0}).status_code == 422


@pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="needs Debian's chromium and chromium-driver (make install installs them)",
)
def test_chromium_plays_the_h264_rendition_with_subtitles_previews_and_recommendations(
    browser: WebDriver, api_url: str, client: httpx.Client, sample_lake: Any, speech_item: str
) -> None:
    user = "player-viewer"
    token = sample_lake.token(user)
    master_url = client.get(
        f"/media/{speech_item}/playback", headers=sample_lake.auth(user), params={"device": "web"}
    ).json()["master_url"]
    master = client.get(master_url).text
    codecs = re.findall(r'#EXT-X-STREAM-INF:.*CODECS="([^"]+)"', master)
    assert len(codecs) == master.count("#EXT-X-STREAM-INF") == 1, master
    assert codecs[0].startswith("avc1."), "a web master lists no HEVC: browsers' MediaSource has none"

    # 127.0.0.1, the API's own origin: Chromium keeps other origins away from private addresses.
    browser.get(f"{api_url}/player?token={token}")
    assert "token=" not in browser.current_url, "the token moves to sessionStorage"
    title = wait_for(
        browser,
        f"[...document.querySelectorAll('#catalog button')].find(b => b.textContent === '{TITLE}')",
        "the catalog",
    )
    title.click()

    assert wait_for(browser, "document.querySelector('video').currentTime > 1", "playback to advance")
    cue = wait_for(
        browser,
        "document.querySelector('video track').track.activeCues?.[0]?.text",
        "an active subtitle cue",
    )
    assert cue == SPOKEN
    recommended = wait_for(
        browser, "[...document.querySelectorAll('#recommendations button')].map(b => b.textContent)", "recs"
    )
    assert recommended and set(recommended) <= set(sample_lake.titles.values()), "the cold-start list"
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any("/h264_240p_" in url for url in fetched), "segments of the H.264 rendition were played"
    assert not any("/hevc_" in url for url in fetched), "the HEVC variant Chromium cannot decode was skipped"
    assert browser.execute_script("return document.getElementById('status').textContent") == ""

    seek = browser.find_element(By.ID, "seek")
    ActionChains(browser).move_to_element(seek).move_by_offset(seek.size["width"] // 4, 0).perform()
    preview = wait_for(
        browser, "document.getElementById('preview').style.backgroundImage", "a trickplay tile"
    )
    assert re.search(r"/images/0+b0/trickplay/sprite_000\.jpg", preview)

    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "player.png"))
    beacons = landed_beacons(sample_lake.settings, user)
    startup = beacons.filter(pl.col("event_type") == "first_frame")["duration_ms"]
    assert startup.len() == 1 and startup[0] > 0, beacons
    switches = beacons.filter(pl.col("event_type") == "rendition_switch")
    assert switches.height >= 1 and switches["height"][0] == 240, beacons  # the H.264 240p rung
    assert (beacons["media_id"] == speech_item).all() and beacons["player_height"].max() > 0


def landed_beacons(settings: Settings, user: str) -> pl.DataFrame:
    """The user's playback beacons once the page's batch (sent within 10 s) is in the lake."""
    deadline = time.monotonic() + WAIT_S
    while True:
        beacons = read_table(settings, "playback_beacons").filter(pl.col("user_id") == user)
        landed = {"first_frame", "rendition_switch"} <= set(beacons["event_type"])
        if landed or time.monotonic() > deadline:
            return beacons
        time.sleep(0.5)
