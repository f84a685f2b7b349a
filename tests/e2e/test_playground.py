"""The web playground at / in a real browser: Debian's Chromium, headless, driven by Selenium
through chromedriver, against a live `localai run` with real models.

Assertions are on the DOM (and on the server's own monitor), never on pixels; each test saves
screenshots into its temporary folder. Skipped when chromium, chromedriver or selenium is
missing (`.ci/run` installs the first two with apt; selenium is in the `test` extras).
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.audio_support import JFK_TEXT, JFK_WAV, MAX_WER, ROOT, wer
from tests.gallery_support import ModelHost, sha256
from tests.support import CHAT_MODEL, LiveServer, get, post

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("the browser tests need Debian's chromium and chromium-driver (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium (the test extras)")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

EMBED_MODEL = "smollm2-embeddings"
ENDLESS_MODEL = "smollm2-endless"
KEY = "sk-playground-0123456789"
WAIT = 120  # seconds: a hang guard for every wait, never a performance limit
# The background-networking switches keep Chromium from connections of its own (updates, sync,
# field trials), which a closed network refuses and which then get in the tests' way.
CHROMIUM_SWITCHES = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1280,900")


# ---- servers and the browser -------------------------------------------------------------------

@pytest.fixture(scope="module")
def playground_models(tmp_path_factory, smollm_path, whisper_model_path):
    """SmolLM2 as the chat model and, under another name, as an embedding model; whisper tiny.en."""
    from localai.defaults import place

    folder = tmp_path_factory.mktemp("playground-models")
    place(smollm_path, folder / "SmolLM2-135M-Instruct.Q4_1.gguf")
    (folder / f"{CHAT_MODEL}.yaml").write_text((ROOT / "models" / f"{CHAT_MODEL}.yaml").read_text())
    (folder / f"{EMBED_MODEL}.yaml").write_text(
        f"name: {EMBED_MODEL}\nbackend: llama\nembeddings: true\ncontext_size: 2048\n"
        "parameters:\n  model: SmolLM2-135M-Instruct.Q4_1.gguf\n")
    # The chat model's weights, answering until max_tokens whatever it says (ignore_eos in the YAML):
    # a stream the Stop test can interrupt, however quickly SmolLM2 would have finished on its own.
    (folder / f"{ENDLESS_MODEL}.yaml").write_text(
        f"name: {ENDLESS_MODEL}\nbackend: llama\ncontext_size: 2048\n"
        "parameters:\n  model: SmolLM2-135M-Instruct.Q4_1.gguf\n  ignore_eos: true\n")
    (folder / "whisper-1.yaml").write_text((ROOT / "models" / "whisper-1.yaml").read_text())
    place(whisper_model_path, folder / whisper_model_path.name)
    return folder


@pytest.fixture(scope="module")
def live(playground_models):
    server = LiveServer(playground_models, "--threads", "2", "--parallel", "2")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed(chat_models_path):
    server = LiveServer(chat_models_path, "--threads", "2", "--api-keys", KEY)
    yield server
    server.stop()


def start_browser(profile, *switches: str):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for switch in (*CHROMIUM_SWITCHES, f"--user-data-dir={profile}", *switches):
        options.add_argument(switch)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture
def browser(tmp_path):
    """A fresh Chromium per test (its own profile: no key or cache left by another test)."""
    driver = start_browser(tmp_path / "profile")
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = WAIT):
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def open_page(driver, server, tab: str = "chat", model_select: str = "chat-model"):
    driver.get(f"{server.url}/#{tab}")
    wait(driver, lambda d: d.execute_script(
        f"return document.querySelector('#{model_select} option[value]:not([value=\"\"])') !== null"))


def shoot(driver, tmp_path, name: str) -> None:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 0
    print(f"screenshot: {path}")


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def monitor(server, model: str = CHAT_MODEL) -> dict:
    status, _, raw = get(server, f"/backend/monitor?model={model}")
    assert status == 200, raw
    return json.loads(raw)


def last_answer(driver):
    answers = driver.find_elements(By.CSS_SELECTOR, "#chat-log .msg.assistant")
    return answers[-1] if answers else None


def fill(driver, element_id: str, text: str) -> None:
    """Replace what a field holds, typed as a user would."""
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def answer_state(driver) -> str | None:
    answer = last_answer(driver)
    return answer.get_attribute("data-state") if answer else None


# Records the assistant text's length at every DOM change while the answer streams (a
# MutationObserver sees each update, however fast the tokens come).
RECORD_GROWTH = """
window.__growth = [];
new MutationObserver((records) => {
  for (const record of records) {
    const message = record.target.closest && record.target.closest('.msg.assistant');
    if (message) window.__growth.push([message.querySelector('.text').textContent.length, message.dataset.state]);
  }
}).observe(document.getElementById('chat-log'), {childList: true, subtree: true, characterData: true});
"""


# ---- the tests ---------------------------------------------------------------------------------

def test_the_page_loads_accessible_and_without_errors(live, browser, tmp_path):
    open_page(browser, live)
    shoot(browser, tmp_path, "playground-chat.png")
    assert browser.title == "localai playground"
    tabs = browser.find_elements(By.CSS_SELECTOR, '[role="tablist"] [role="tab"]')
    selected = [tab.text for tab in tabs if tab.get_attribute("aria-selected") == "true"]
    assert selected == ["Chat"] and all(tab.tag_name == "button" for tab in tabs)
    images_tab = browser.find_element(By.ID, "tab-images")
    assert not images_tab.is_displayed()  # no stablediffusion model here
    for select_id, expected in (("chat-model", {CHAT_MODEL, EMBED_MODEL, ENDLESS_MODEL}), ("embed-model", {EMBED_MODEL}),
                                ("audio-model", {"whisper-1"})):
        assert {o.get_attribute("value") for o in Select(browser.find_element(By.ID, select_id)).options} \
            == expected, select_id
    unlabelled = browser.execute_script("""
        return [...document.querySelectorAll('input, select, textarea')].filter((c) =>
          !(c.labels && c.labels.length) && !c.getAttribute('aria-label')).map((c) => c.id);""")
    assert unlabelled == []

    # the keyboard: arrow keys move between the tabs, and the panel follows
    tabs[0].send_keys(Keys.ARROW_RIGHT)
    assert browser.switch_to.active_element.get_attribute("id") == "tab-embed"
    assert browser.find_element(By.ID, "panel-embed").is_displayed()
    assert not browser.find_element(By.ID, "panel-chat").is_displayed()

    # the models tab: installed models grouped by what they can do, and the gallery with install buttons
    browser.find_element(By.ID, "tab-models").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery-list li"))
    groups = {g.get_attribute("data-cap"): g.text for g in browser.find_elements(By.CSS_SELECTOR,
                                                                                 "#models-installed [data-cap]")}
    assert set(groups) == {"text", "embeddings", "transcription"}
    assert "whisper-1" in groups["transcription"] and EMBED_MODEL in groups["embeddings"]
    smollm = browser.find_element(By.CSS_SELECTOR, f'#gallery-list li[data-id="localai@{CHAT_MODEL}"] button')
    assert smollm.text == "Installed" and not smollm.is_enabled()
    shoot(browser, tmp_path, "playground-models.png")
    assert console_errors(browser) == []  # no CSP violation, no failed request, no script error

    # phone-sized: nothing wider than the window
    browser.set_window_size(390, 844)
    browser.find_element(By.ID, "tab-chat").click()
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    shoot(browser, tmp_path, "playground-phone.png")

    # dark or light as the system says
    background = "return getComputedStyle(document.body).backgroundColor"
    light = browser.execute_script(background)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    dark = browser.execute_script(background)
    assert light == "rgb(250, 250, 250)" and dark == "rgb(21, 22, 26)", (light, dark)
    shoot(browser, tmp_path, "playground-phone-dark.png")


def test_chat_streams_token_by_token(live, browser, tmp_path):
    open_page(browser, live)
    Select(browser.find_element(By.ID, "chat-model")).select_by_value(CHAT_MODEL)
    fill(browser, "chat-max-tokens", "48")
    box = browser.find_element(By.ID, "chat-input")
    box.send_keys("first line", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "second line")
    assert box.get_attribute("value") == "first line\nsecond line"  # Shift+Enter: a new line, nothing sent
    assert last_answer(browser) is None
    box.clear()
    browser.execute_script(RECORD_GROWTH)
    box.send_keys("Tell me about the sea in three sentences.", Keys.ENTER)  # Enter sends

    polled = set()

    def done(driver):
        answer = last_answer(driver)
        if answer is not None and answer.get_attribute("data-state") == "streaming":
            polled.add(len(answer.text))
        return answer_state(driver) == "done"

    wait(browser, done)
    growth = browser.execute_script("return window.__growth")
    lengths = [length for length, state in growth if state == "streaming"]
    print(f"streamed lengths seen by the observer: {lengths}; by polling: {sorted(polled)}")
    assert len(set(lengths)) >= 3 and lengths == sorted(lengths), growth  # it grew, piece by piece
    final = last_answer(browser).find_element(By.CSS_SELECTOR, ".text").text
    assert final and len(final) >= max(lengths) - 1  # (the DOM's text, trailing whitespace aside)
    stats = browser.find_element(By.ID, "chat-stats").text
    assert "completion tokens" in stats and "tokens/s" in stats and "first token" in stats, stats
    assert browser.find_element(By.ID, "chat-send").is_enabled()
    assert not browser.find_element(By.ID, "chat-stop").is_enabled()
    shoot(browser, tmp_path, "playground-chat-streamed.png")
    assert console_errors(browser) == []


def test_stop_aborts_the_stream_and_the_server_frees_the_slot(live, browser, tmp_path):
    open_page(browser, live)
    Select(browser.find_element(By.ID, "chat-model")).select_by_value(ENDLESS_MODEL)
    fill(browser, "chat-max-tokens", "1500")
    browser.find_element(By.ID, "chat-input").send_keys("Count from 1 to 500, one number per line.", Keys.ENTER)
    wait(browser, lambda d: last_answer(d) is not None and len(last_answer(d).text) > 0)
    busy = monitor(live, ENDLESS_MODEL)
    assert busy["loaded"] and busy["active_sequences"] == 1, busy  # generating now
    stop = browser.find_element(By.ID, "chat-stop")
    assert stop.is_enabled()
    stop.click()
    wait(browser, lambda d: answer_state(d) == "stopped")
    assert "(stopped)" in last_answer(browser).text
    assert "Stopped after" in browser.find_element(By.ID, "chat-stats").text
    # the server notices the closed connection and frees the slot (long before 1500 tokens)
    wait(browser, lambda d: monitor(live, ENDLESS_MODEL)["active_sequences"] == 0)
    assert monitor(live, ENDLESS_MODEL)["waiting"] == 0
    shoot(browser, tmp_path, "playground-chat-stopped.png")

    # and the next message is answered at once
    fill(browser, "chat-max-tokens", "4")
    browser.find_element(By.ID, "chat-input").send_keys("Say hi.", Keys.ENTER)
    wait(browser, lambda d: answer_state(d) == "done")


def test_embeddings_show_a_similarity_grid(live, browser, tmp_path):
    open_page(browser, live, "embed", "embed-model")
    assert browser.find_element(By.ID, "panel-embed").is_displayed()
    fill(browser, "embed-input", "The cat sleeps on the sofa.\nQuarterly revenue grew by four percent.")
    browser.find_element(By.ID, "embed-run").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#embed-grid tbody tr"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#embed-grid tbody tr")
    grid = [[float(cell.text) for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    assert len(grid) == 2 and all(len(row) == 2 for row in grid)
    assert grid[0][0] == grid[1][1] == 1.0
    assert grid[0][1] == grid[1][0] and -1.0 <= grid[0][1] < 1.0
    assert "2 vectors of" in browser.find_element(By.ID, "embed-stats").text
    shoot(browser, tmp_path, "playground-embeddings.png")
    assert console_errors(browser) == []


def test_transcription_of_the_test_audio(live, browser, tmp_path):
    open_page(browser, live, "audio", "audio-model")
    browser.find_element(By.ID, "audio-file").send_keys(str(JFK_WAV))
    browser.find_element(By.ID, "audio-run").click()
    wait(browser, lambda d: d.find_element(By.ID, "audio-text").text.strip()
         or d.find_element(By.ID, "audio-error").is_displayed())
    assert not browser.find_element(By.ID, "audio-error").is_displayed()
    text = browser.find_element(By.ID, "audio-text").text
    assert wer(JFK_TEXT, text) <= MAX_WER, text
    segments = browser.find_elements(By.CSS_SELECTOR, "#audio-segments tbody tr")
    assert segments
    first = [cell.text for cell in segments[0].find_elements(By.TAG_NAME, "td")]
    assert first[0].startswith("0:0") and first[1].startswith("0:") and first[2]
    assert "s of audio" in browser.find_element(By.ID, "audio-stats").text
    shoot(browser, tmp_path, "playground-transcription.png")
    assert console_errors(browser) == []


def test_the_page_with_an_api_key(keyed, browser, tmp_path):
    browser.get(keyed.url)
    status = browser.find_element(By.ID, "status")
    wait(browser, lambda d: status.is_displayed())
    assert "Incorrect API key" in status.text  # the API's own message
    shoot(browser, tmp_path, "playground-key-refused.png")

    browser.find_element(By.ID, "api-key").send_keys(KEY, Keys.ENTER)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#chat-model option[value="{CHAT_MODEL}"]'))
    assert not status.is_displayed()
    fill(browser, "chat-max-tokens", "8")
    browser.find_element(By.ID, "chat-input").send_keys("Say hi.", Keys.ENTER)
    wait(browser, lambda d: answer_state(d) in ("done", "error"))
    assert answer_state(browser) == "done" and not browser.find_element(By.ID, "chat-error").is_displayed()
    shoot(browser, tmp_path, "playground-key-accepted.png")

    assert browser.execute_script("return localStorage.getItem('localai.apiKey')") == KEY
    urls = browser.execute_script("return [location.href, ...performance.getEntriesByType('resource')"
                                  ".map((e) => e.name)]")
    assert not any(KEY in url for url in urls), urls  # never in a URL

    browser.refresh()  # kept in the page's storage: the next visit just works
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#chat-model option[value="{CHAT_MODEL}"]'))
    assert browser.find_element(By.ID, "api-key").get_attribute("value") == KEY
    assert not browser.find_element(By.ID, "status").is_displayed()

    browser.find_element(By.ID, "key-forget").click()  # and forgotten on request
    wait(browser, lambda d: d.find_element(By.ID, "status").is_displayed())
    assert browser.execute_script("return localStorage.getItem('localai.apiKey')") is None


@pytest.fixture(scope="module")
def images_server(tmp_path_factory):
    """A stablediffusion model on the tiny asset set, and one whose assets are missing (the YAML
    alone makes the Images tab appear)."""
    from localai import sdassets

    folder = tmp_path_factory.mktemp("playground-image-models")
    sdassets.write_tiny_assets(folder / "stablediffusion_assets", seed=0)
    (folder / "stablediffusion.yaml").write_text(
        "name: stablediffusion\nbackend: stablediffusion\nparameters:\n  model: stablediffusion_assets\n")
    (folder / "no-assets.yaml").write_text("name: no-assets\nbackend: stablediffusion\nasset_dir: missing_assets\n")
    server = LiveServer(folder, "--threads", "2")
    yield server
    server.stop()


IMAGE_REQUEST = {"prompt": "a red cube", "size": "256x256", "n": 1, "step": 2, "response_format": "b64_json"}


def generate_image(driver, server, model: str):
    """Ask for IMAGE_REQUEST through the Images tab; wait for the image or the error."""
    driver.get(f"{server.url}/#images")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'#image-model option[value="{model}"]'))
    assert driver.find_element(By.ID, "tab-images").is_displayed()
    assert driver.find_element(By.ID, "tab-images").get_attribute("aria-selected") == "true"
    Select(driver.find_element(By.ID, "image-model")).select_by_value(model)
    Select(driver.find_element(By.ID, "image-size")).select_by_value(IMAGE_REQUEST["size"])
    for field, value in (("image-steps", str(IMAGE_REQUEST["step"])), ("image-prompt", IMAGE_REQUEST["prompt"])):
        fill(driver, field, value)
    driver.find_element(By.ID, "image-run").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#image-result img")
         or d.find_element(By.ID, "image-error").is_displayed())


def test_an_api_error_is_shown_in_the_apis_words(images_server, browser, tmp_path):
    """A model that cannot generate (its assets are missing, or the image backend is not built)."""
    generate_image(browser, images_server, "no-assets")
    status, _, raw = post(images_server, "/v1/images/generations", {**IMAGE_REQUEST, "model": "no-assets"})
    assert status >= 400
    assert browser.find_element(By.ID, "image-error").text == json.loads(raw)["error"]["message"]
    assert not browser.find_elements(By.CSS_SELECTOR, "#image-result img")
    assert browser.find_element(By.ID, "image-run").is_enabled()  # ready for another try
    shoot(browser, tmp_path, "playground-images-error.png")


@pytest.mark.stablediffusion
def test_generating_an_image(images_server, browser, tmp_path):
    generate_image(browser, images_server, "stablediffusion")
    assert not browser.find_element(By.ID, "image-error").is_displayed(), \
        browser.find_element(By.ID, "image-error").text
    image = browser.find_element(By.CSS_SELECTOR, "#image-result img")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    wait(browser, lambda d: d.execute_script("return arguments[0].complete", image))
    assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image) \
        == [256, 256]
    shoot(browser, tmp_path, "playground-image.png")
    assert console_errors(browser) == []


@pytest.fixture(scope="module")
def gallery_server(tmp_path_factory, smollm_path):
    """A server with no models and a gallery on a local host that serves SmolLM2 slowly (progress to see)."""
    host = ModelHost()
    host.add("/smollm.gguf", path=smollm_path, delay=0.004)
    host.add("/index.yaml", [{
        "name": "tiny-chat", "description": "SmolLM2 from the test host", "tags": ["chat"],
        "config_file": "backend: llama\ncontext_size: 1024\nparameters:\n  model: tiny-chat.gguf\n",
        "files": [{"filename": "tiny-chat.gguf", "uri": host.url("/smollm.gguf"), "sha256": sha256(smollm_path)}]}])
    galleries = json.dumps([{"name": "test", "url": host.url("/index.yaml")}])
    server = LiveServer(tmp_path_factory.mktemp("empty-models"), "--threads", "2", "--allow-private-urls",
                        "--galleries", galleries)
    yield server
    server.stop()
    host.close()


def test_installing_a_gallery_model_with_live_progress(gallery_server, browser, tmp_path):
    browser.get(f"{gallery_server.url}/#models")
    item = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#gallery-list li[data-id="test@tiny-chat"]'))[0]
    assert "(no model can do this)" in browser.find_element(By.ID, "chat-model").get_attribute("textContent")
    filter_box = browser.find_element(By.ID, "gallery-filter")
    filter_box.send_keys("tiny chat")
    assert [li.get_attribute("data-id") for li in browser.find_elements(By.CSS_SELECTOR, "#gallery-list li")] \
        == ["test@tiny-chat"]
    button = item.find_element(By.TAG_NAME, "button")
    assert button.text == "Install"
    button.click()

    progress: list[float] = []

    def over(driver) -> bool:
        """Records the bar's value; whether the job is over (installed, or failed)."""
        for bar in item.find_elements(By.TAG_NAME, "progress"):
            progress.append(float(bar.get_attribute("value")))
        return button.text == "Installed" or bool(item.find_elements(By.CSS_SELECTOR, "p.error"))

    wait(browser, lambda d: over(d) or any(0 < v < 100 for v in progress))
    shoot(browser, tmp_path, "playground-gallery-progress.png")
    wait(browser, over)
    assert not item.find_elements(By.CSS_SELECTOR, "p.error"), item.text
    print(f"progress values seen: {sorted(set(progress))}")
    assert any(0 < v < 100 for v in progress), progress  # the job's progress, shown while it ran
    # the new model serves at once: the chat picker has it, and it answers
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#chat-model option[value="tiny-chat"]'))
    shoot(browser, tmp_path, "playground-gallery-installed.png")
    browser.find_element(By.ID, "tab-chat").click()
    fill(browser, "chat-max-tokens", "4")
    browser.find_element(By.ID, "chat-input").send_keys("Say hi.", Keys.ENTER)
    wait(browser, lambda d: answer_state(d) in ("done", "error"))
    assert answer_state(browser) == "done"


def test_first_paint_and_page_weight(live, browser, tmp_path):
    """Measured, not asserted: time to first paint and the bytes the page costs (printed; run with -s)."""
    browser.get(live.url)
    wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
    wait(browser, lambda d: d.execute_script("return performance.getEntriesByType('paint').length") >= 2)
    measured = browser.execute_script("""
        const nav = performance.getEntriesByType('navigation')[0];
        const files = [nav, ...performance.getEntriesByType('resource').filter((e) => e.name.includes('/static/'))];
        return {
          paint: Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime])),
          dom_content_loaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
          files: files.map((e) => ({name: new URL(e.name).pathname, body: e.encodedBodySize,
                                    transferred: e.transferSize}))};""")
    measured["files"] = list({f["name"]: f for f in reversed(measured["files"])}.values())[::-1]  # the icon: once
    measured["page_bytes"] = sum(f["body"] for f in measured["files"])
    measured["transferred_bytes"] = sum(f["transferred"] for f in measured["files"])
    (tmp_path / "playground-metrics.json").write_text(json.dumps(measured, indent=2))
    print("playground:", json.dumps(measured))
    names = {f["name"] for f in measured["files"]}
    assert {"/", "/static/app.js", "/static/style.css"} <= names
    assert measured["paint"]["first-paint"] > 0 and measured["page_bytes"] > 0


def test_recording_from_the_microphone(live, tmp_path):
    """Record with MediaRecorder from Chromium's fake microphone (playing the test clip), then transcribe."""
    driver = start_browser(tmp_path / "profile", "--use-fake-ui-for-media-stream",
                           "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={JFK_WAV}")
    try:
        open_page(driver, live, "audio", "audio-model")
        record = driver.find_element(By.ID, "audio-record")
        record.click()
        wait(driver, lambda d: record.get_attribute("aria-pressed") == "true")
        time.sleep(4)  # four seconds of the clip (a recording's length, not a limit)
        record.click()
        wait(driver, lambda d: d.find_element(By.ID, "audio-text").text.strip()
             or d.find_element(By.ID, "audio-error").is_displayed())
        assert not driver.find_element(By.ID, "audio-error").is_displayed(), \
            driver.find_element(By.ID, "audio-error").text
        assert driver.find_element(By.ID, "audio-preview").get_attribute("src").startswith("blob:")
        shoot(driver, tmp_path, "playground-recording.png")
        print("recorded and transcribed:", driver.find_element(By.ID, "audio-text").text)
    finally:
        driver.quit()
