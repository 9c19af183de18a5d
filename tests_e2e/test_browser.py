"""The real web UI: a person adds zevvy in Home Assistant with Chromium.

Playwright drives Debian's Chromium (/usr/bin/chromium, no browser download):
log in, add the integration, open the approval link, approve on the sandbox's
page, accept the suggested meters and look at the zevvy devices; then open
*Change meter* in German, French, Italian and English and check that every word
of it is in that language. Every step leaves a screenshot in
artifacts/e2e/test_add_zevvy_in_the_browser/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
import re
from urllib.parse import urlsplit
import warnings
from zoneinfo import ZoneInfo

from playwright.sync_api import (
    Browser,
    Error as PlaywrightError,
    Locator,
    Page,
    expect,
    sync_playwright,
)
import pytest

from tests import icu

from .harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    HA_PASSWORD,
    HA_USER,
    HomeAssistantProcess,
    SandboxProcess,
    next_quarter,
    quarter_floor,
    wait_for,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000
# Home Assistant's time zone (config/configuration.yaml).
ZURICH = ZoneInfo("Europe/Zurich")
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Start Chromium through Playwright; close it (and the driver) afterwards."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


class Screenshots:
    """Numbered screenshots of one test."""

    def __init__(self, folder: Path) -> None:
        """Write into folder."""
        self.folder = folder
        self.count = 0

    def take(self, page: Page, name: str) -> None:
        """Save the page as NN-name.png.

        A screenshot is a by-product: one that Chromium cannot take (the page is
        just navigating) is tried again and, at worst, missing; it never fails the
        test.
        """
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        for _attempt in range(3):
            try:
                page.wait_for_load_state()
                page.screenshot(path=path)
            except PlaywrightError as err:
                error = err
                page.wait_for_timeout(500)
            else:
                return
        warnings.warn(f"No screenshot {path.name}: {error}", stacklevel=2)


def test_add_zevvy_in_the_browser(
    browser: Browser,
    home_assistant: HomeAssistantProcess,
    sandbox: SandboxProcess,
    artifacts: Path,
) -> None:
    """Log in, add zevvy, approve on the sandbox, choose meters, see the devices."""
    shots = Screenshots(artifacts)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        add_zevvy_in_the_browser(page, home_assistant, sandbox, shots)
    except Exception:
        for number, open_page in enumerate(context.pages):
            shots.take(open_page, f"failure-{number}")
        raise


def add_zevvy_in_the_browser(
    page: Page,
    home_assistant: HomeAssistantProcess,
    sandbox: SandboxProcess,
    shots: Screenshots,
) -> None:
    """The steps of test_add_zevvy_in_the_browser."""
    context = page.context

    # Log in to Home Assistant. The login form renders a moment after the page
    # loads and may render again: check the fields kept what was typed.
    page.goto(home_assistant.url)
    username = page.get_by_label("Username")
    password = page.get_by_label("Password", exact=True)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.wait_for_load_state("networkidle")
    username.fill(HA_USER)
    password.fill(HA_PASSWORD)
    expect(username).to_have_value(HA_USER)
    expect(password).to_have_value(HA_PASSWORD)
    shots.take(page, "login")
    page.get_by_role("button", name="Log in").click()
    # The default dashboard: /lovelace (2025.4) or /home (2026.x).
    page.wait_for_url(lambda url: urlsplit(url).path.startswith(("/lovelace", "/home")))
    expect(page.get_by_text("Overview").first).to_be_visible()

    # Settings > Devices & services > Add integration > zevvy.
    page.goto(f"{home_assistant.url}/config/integrations/dashboard")
    page.get_by_role("button", name="Add integration").click()
    # A labelled field (2025.4) or one with a placeholder (2026.x).
    search = "Search for a brand name"
    page.get_by_label(search).or_(page.get_by_placeholder(search)).first.fill("zevvy")
    page.get_by_text("zevvy", exact=True).click()

    flow = page.locator("dialog-data-entry-flow")
    expect(flow.get_by_text("Connect to zevvy")).to_be_visible()
    flow.get_by_role("textbox", name="Client ID").fill(CLIENT_ID)
    flow.get_by_role("textbox", name="Client secret").fill(CLIENT_SECRET)
    flow.get_by_text("Advanced").click()
    flow.get_by_role("textbox", name="Login server address").fill(sandbox.issuer)
    flow.get_by_role("textbox", name="Data server address").fill(sandbox.api_url)
    page.wait_for_timeout(500)  # the section's opening animation
    shots.take(page, "credentials")
    flow.get_by_role("button", name="Submit").click()

    # The progress step: a link to the sandbox's approval page and the code.
    expect(flow.get_by_text("Confirm the connection on zevvy")).to_be_visible()
    link = flow.get_by_role("link", name="the zevvy login page")
    url = link.get_attribute("href")
    assert url is not None
    assert url.startswith(f"{sandbox.url}/device")
    shots.take(page, "waiting-for-approval")

    # The person opens the link (a new tab) and approves.
    approval = context.new_page()
    approval.goto(url)
    expect(approval.get_by_text("Grant access?")).to_be_visible()
    shots.take(approval, "sandbox-approve")
    approval.get_by_role("button", name="Approve").click()
    expect(approval.get_by_text("Device approved")).to_be_visible()
    shots.take(approval, "sandbox-approved")
    approval.close()

    # Home Assistant moves on by itself: choose meters (Energy dashboard ones
    # preselected), then confirm the names of each.
    expect(flow.get_by_text("Choose meters")).to_be_visible()
    shots.take(page, "choose-meters")
    flow.get_by_role("button", name="Submit").click()
    # Eight preselected meters (config/.storage_seed/energy: seven electricity
    # meters and a water meter in litres): eight steps.
    for position in range(1, 9):
        expect(flow.get_by_text(f"Names on zevvy ({position} of 8)")).to_be_visible()
        if position == 1:
            shots.take(page, "meter-names")
        flow.get_by_role("button", name="Submit").click()
    # "Success" with "Finish" (2025.4), or "Name and assign" the new devices
    # with "Skip and finish" (2026.x).
    expect(
        flow.get_by_text("Success").or_(flow.get_by_text("Name and assign")).first
    ).to_be_visible()
    shots.take(page, "created")
    flow.get_by_role("button", name=re.compile(r"^(Skip and f|F)inish$")).click()

    entries = home_assistant.config_entries("zevvy")
    assert [entry["title"] for entry in entries] == ["demo"]
    wait_for(
        lambda: home_assistant.config_entries("zevvy")[0]["state"] == "loaded",
        timeout=30,
        message="the zevvy entry to load",
    )

    # The integration's page lists the account and its devices.
    page.goto(f"{home_assistant.url}/config/integrations/integration/zevvy")
    expect(page.get_by_text("demo").first).to_be_visible()
    page.wait_for_timeout(500)
    shots.take(page, "integration-page")

    # The account's device "zevvy" with its diagnostic entities.
    # A list item (2025.4) or a link (2026.x) to the integration's devices.
    services = re.compile(r"^\d+\s+services$")
    page.get_by_text(services).or_(
        page.get_by_role("link", name=services)
    ).first.click()
    # The account's device is the "Meter-reading gateway"; meters are "Meter".
    page.get_by_role("row").filter(has_text="Meter-reading gateway").get_by_role(
        "cell", name="zevvy", exact=True
    ).first.click()
    for name in ("Upload now", "Connection", "Readings waiting"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    page.wait_for_timeout(500)
    shots.take(page, "zevvy-device")

    # The next quarter hour (Home Assistant's clock moved to just before it):
    # the readings show up on the sandbox's overview.
    quarter = next_quarter(home_assistant.now())
    home_assistant.restart(clock=quarter - timedelta(seconds=15))
    wait_for(
        lambda: len(sandbox.readings()) == 8,
        timeout=60,
        message="the readings of eight meters",
    )
    # The water meter next to the electricity meters, in m³ (it counts litres).
    water = sandbox.readings(device_ref="Apartment 1 water")
    assert [reading["register_ref"] for reading in water] == ["Water"]
    assert 312 < water[0]["value"] < 1000, water
    overview = context.new_page()
    overview.goto(sandbox.url)
    for device in (
        "Apartment 1",
        "Apartment 1 water",
        "Apartment 3",
        "Grid export",
        "PV system",
    ):
        expect(overview.get_by_text(device).first).to_be_visible()
    shots.take(overview, "sandbox-readings")
    overview.close()

    for language in ("de", "fr", "it", "en"):
        change_meter_in(page, home_assistant, shots, language)
        add_running_total_in(page, home_assistant, shots, language)

    # A reading typed in lower than the one before (a drop), then a second.
    quarter = quarter_floor(home_assistant.now())
    for minutes, value in ((30, 100.0), (15, 50.0)):
        send_manual_reading(home_assistant, quarter - timedelta(minutes=minutes), value)
    first_held = (quarter - timedelta(minutes=15)).astimezone(ZURICH)
    for language in ("de", "fr", "it", "en"):
        drop_repair_in(page, home_assistant, shots, language, 1, first_held)
    send_manual_reading(home_assistant, quarter, 40.0)
    for language in ("de", "fr", "it", "en"):
        drop_repair_in(page, home_assistant, shots, language, 2, first_held)


# The frontend's own labels: a subentry's Configure button, a form's submit.
CONFIGURE = {
    "en": "Configure",
    "de": "Konfigurieren",
    "fr": "Configurer",
    "it": "Configura",
}
SUBMIT = {"en": "Submit", "de": "OK", "fr": "Valider", "it": "Invia"}
MENU = {"en": "Menu", "de": "Menü", "fr": "Menu", "it": "Menu"}


# The text of an element and its shadow roots (the dialog's text lives in
# nested shadow DOM, which inner_text() does not enter), without styles.
_TEXT_JS = """element => {
  const parts = [];
  const walk = node => {
    if (node.nodeType === Node.TEXT_NODE) { parts.push(node.textContent); return; }
    if (node.nodeName === "STYLE" || node.nodeName === "SCRIPT") return;
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) walk(child);
  };
  walk(element);
  return parts.join(" ").replace(/\\s+/g, " ");
}"""


def dialog_text(flow: Locator) -> str:
    """Return what the flow dialog shows (its texts, labels and options)."""
    text: str = flow.evaluate(_TEXT_JS)
    assert text.strip(), "the dialog shows no text"
    return text


def change_meter_in(
    page: Page, home_assistant: HomeAssistantProcess, shots: Screenshots, language: str
) -> None:
    """Open the first meter's *Change meter* with the user's language set to
    ``language``: its text is in that language, no English word of the
    integration in another one, and no UTC time."""
    page.evaluate(
        "language => localStorage.setItem('selectedLanguage', JSON.stringify(language))",
        language,
    )
    page.goto(f"{home_assistant.url}/config/integrations/integration/zevvy")
    page.reload()
    # The meter's button: "Configure" on 2025.4; on 2026.x a gear labelled
    # with the integration's own text ("Change meter").
    change = icu.lookup(language, "config_subentries.meter.initiate_flow.reconfigure")
    page.get_by_role("button", name=CONFIGURE[language], exact=True).or_(
        page.get_by_role("button", name=change, exact=True)
    ).first.click()
    flow = page.locator("dialog-data-entry-flow")
    title = icu.lookup(language, "config_subentries.meter.step.reconfigure.title")
    expect(flow.get_by_text(title)).to_be_visible()
    page.wait_for_timeout(500)
    shots.take(page, f"change-meter-{language}")
    text = dialog_text(flow)
    assert "+00:00" not in text
    if language != "en":
        # The first meter in the list (by title): the water meter or
        # Apartment 1's electricity meter; its names are the user's words.
        user_data = [
            "Apartment 1 water",
            "sensor.apartment_1_water",
            "Water",
            "Apartment 1",
            "Energy",
            "sensor.apartment_1",
        ]
        assert not icu.leaked_english(language, text, user_data), text
    # The next language loads the page anew, which closes the dialog.


def add_running_total_in(
    page: Page, home_assistant: HomeAssistantProcess, shots: Screenshots, language: str
) -> None:
    """*Add meter* from the account's menu with a charger's session sensor:
    the names step suggests a running total in ``language``, the next step asks
    its start value and says when it starts, in local time."""
    page.goto(f"{home_assistant.url}/config/integrations/integration/zevvy")
    page.reload()
    add_meter = icu.lookup(language, "config_subentries.meter.initiate_flow.user")
    # In the account's ⋮ menu (the first one of the page) in 2025.4; a button of
    # its own where a newer frontend shows one.
    button = page.get_by_role("button", name=add_meter, exact=True)
    menu = page.get_by_role("button", name=MENU[language], exact=True)
    # The page has loaded (count() does not wait).
    expect(button.or_(menu).first).to_be_visible()
    if button.count():
        button.first.click()
    else:
        page.get_by_role("button", name=MENU[language], exact=True).first.click()
        page.get_by_role("menuitem", name=add_meter).click()
    flow = page.locator("dialog-data-entry-flow")
    expect(
        flow.get_by_text(
            icu.lookup(language, "config_subentries.meter.step.user.title")
        )
    ).to_be_visible()
    # The entity picker: a combobox to type in (2025.4), or a field that opens
    # a searchable list when clicked (2026.x). Either way: click, type, pick.
    flow.locator("ha-entity-picker").first.click()
    page.wait_for_timeout(300)
    page.keyboard.type("EV charger session")
    # An option (2025.4) or a list item of the search results (2026.x).
    option = page.get_by_role("option", name=re.compile("EV charger session")).or_(
        page.get_by_text("EV charger session", exact=True)
    )
    expect(option.first).to_be_visible()
    option.first.click()
    flow.get_by_role("button", name=SUBMIT[language], exact=True).click()

    names = icu.lookup(language, "config_subentries.meter.step.references.title")
    expect(flow.get_by_text(names)).to_be_visible()
    page.wait_for_timeout(500)
    shots.take(page, f"add-meter-names-{language}")
    user_data = ["EV charger session", "Energy", "sensor.ev_charger_session"]
    text = dialog_text(flow)
    if language != "en":
        assert not icu.leaked_english(language, text, user_data), text
    running_total = icu.load(language)["selector"]["reading_source"]["options"][
        "running_total"
    ]
    # Suggested (and preselected) for a sensor that restarts from zero.
    assert f"{running_total}" in text
    flow.get_by_role("button", name=SUBMIT[language], exact=True).click()

    start = icu.lookup(language, "config_subentries.meter.step.start.title")
    expect(flow.get_by_text(start)).to_be_visible()
    page.wait_for_timeout(500)
    shots.take(page, f"add-meter-start-{language}")
    text = dialog_text(flow)
    assert "+00:00" not in text
    local_start = next_quarter(home_assistant.now()).astimezone(ZURICH)
    assert local_start.strftime("%Y-%m-%d %H:%M") in text, text
    if language != "en":
        assert not icu.leaked_english(language, text, user_data), text


def send_manual_reading(
    home_assistant: HomeAssistantProcess, moment: datetime, value: float
) -> None:
    """Send a reading of a meter without a sensor (zevvy.send_reading)."""
    response = home_assistant.call_service(
        "zevvy",
        "send_reading",
        {
            "device_ref": "Heat",
            "register_ref": "Energy",
            "value": value,
            "time": moment.isoformat(),
        },
    )
    assert response.ok, response.text


# What the drop repair says of 1 and of 2 held readings, by language.
HELD = {
    "en": ("this reading (of {time})", "these 2 readings (since {time})"),
    "de": ("dieser Zählerstand (von {time})", "diese 2 Zählerstände (seit {time})"),
    "fr": ("ce relevé (de {time})", "ces 2 relevés (depuis {time})"),
    "it": ("questa lettura (del {time})", "queste 2 letture (dal {time})"),
}


def drop_repair_in(
    page: Page,
    home_assistant: HomeAssistantProcess,
    shots: Screenshots,
    language: str,
    count: int,
    first_held: datetime,
) -> None:
    """Open the drop repair in ``language``: the held readings' number agrees
    (1 and 2), their time is local, every word is in that language."""
    page.evaluate(
        "language => localStorage.setItem('selectedLanguage', JSON.stringify(language))",
        language,
    )
    page.goto(f"{home_assistant.url}/config/repairs")
    page.reload()
    title = icu.render(
        language,
        icu.lookup(language, "issues.reading_held.title"),
        {"device": "Heat", "register": "Energy"},
    )
    page.get_by_text(title).first.click()
    flow = page.locator("dialog-data-entry-flow")
    step = icu.lookup(language, "issues.reading_held.fix_flow.step.init.title")
    expect(flow.get_by_text(step)).to_be_visible()
    page.wait_for_timeout(500)
    shots.take(page, f"drop-repair-{count}-{language}")
    text = dialog_text(flow)
    expected = HELD[language][count - 1].format(
        time=first_held.strftime("%Y-%m-%d %H:%M")
    )
    assert expected in text, text
    assert "+00:00" not in text
    if language != "en":
        assert not icu.leaked_english(language, text, ["Heat", "Energy"]), text
