"""The web chat page at / in a real browser: Debian's chromium + chromium-driver, driven headless
by Debian's python3-selenium. Run by tests/rpc/chat_page_e2e.sh (which skips, saying so, without
them). Environment: TPSERVE_BIN, TPSERVE_FIXTURES, TPSERVE_MPIRUN; TPSERVE_ARTIFACTS (where the
screenshot goes).

Loads /, sends a message and sees the reply stream in (its text grows between two looks and ends
equal to the API's own greedy reply), presses stop mid-reply (the page stops, and the server's
Stats show the request gone and its KV blocks free), checks text is never injected as HTML and
Chinese survives the round trip, and saves a screenshot.
"""
import json
import os
import re
import signal
import subprocess
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from e2e_checks import check, finish, metric

BIN = os.environ["TPSERVE_BIN"]
MODEL = os.path.join(os.environ["TPSERVE_FIXTURES"], "qwen2_tied")
MPIRUN = os.environ["TPSERVE_MPIRUN"].split()
ARTIFACTS = os.environ.get("TPSERVE_ARTIFACTS", os.getcwd())



def start_server():
    # Two ranks, rank 1 20 ms slower per step: a reply takes seconds, long enough to stop.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TPSERVE_FAULT_STEP_DELAY_MS="20")
    process = subprocess.Popen(MPIRUN + ["-np", "2", BIN, "serve", "--model", MODEL, "--port", "0",
                                         "--http-port", "0", "--metrics-port", "0"],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True)
    line = process.stdout.readline()
    match = re.search(r"metrics port (\d+), http port (\d+), pid (\d+)", line)
    if not match:
        process.kill()
        raise RuntimeError(f"serve did not start: {line!r}")
    return process, *map(int, match.groups())


def api_reply(http_port, message, max_tokens):
    body = json.dumps({"messages": [{"role": "user", "content": message}], "temperature": 0,
                       "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/chat/completions", body,
                                     {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request).read())["choices"][0]["message"]["content"]


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,800"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def set_field(driver, element_id, value):
    field = driver.find_element(By.ID, element_id)
    field.clear()
    if value != "":
        field.send_keys(str(value))


def send(driver, text):
    driver.find_element(By.ID, "prompt").send_keys(text)
    driver.find_element(By.ID, "send").click()


def last_reply(driver):
    turns = driver.find_elements(By.CSS_SELECTOR, ".turn.assistant")
    return turns[-1] if turns else None


def wait_for(condition, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def main():
    process, metrics_port, http_port, rank0_pid = start_server()
    driver = browser()
    try:
        driver.get(f"http://127.0.0.1:{http_port}/")
        check("page loads and names the model",
              wait_for(lambda: driver.find_element(By.ID, "model").text == "qwen2_tied", 10))
        # Greedy, 24 tokens: the page's reply must equal the API's, Chinese and all.
        set_field(driver, "temperature", 0)
        set_field(driver, "max-tokens", 24)
        message = "你好，<b>世界</b>"
        send(driver, message)
        user = driver.find_elements(By.CSS_SELECTOR, ".turn.user .text")[-1]
        check("Chinese and markup in the user's message shown as typed",
              user.text == message and not user.find_elements(By.TAG_NAME, "b"), user.text)
        done = wait_for(lambda: "tokens/s" in (last_reply(driver).text if last_reply(driver) else ""))
        reply = last_reply(driver).find_element(By.CSS_SELECTOR, ".text")
        want = api_reply(http_port, message, 24)
        check("the streamed reply equals the API's greedy reply (UTF-8 kept whole)",
              done and reply.get_attribute("textContent") == want,
              f"{reply.get_attribute('textContent')!r} vs {want!r}")
        check("the reply's text holds no elements (never injected as HTML)",
              not reply.find_elements(By.XPATH, "./*"))
        stats = last_reply(driver).find_element(By.CSS_SELECTOR, ".stats").text
        check("TTFT and tokens/s shown", re.search(r"TTFT [\d.]+ s · [\d.]+ tokens/s · 24 tokens",
                                                   stats) is not None, stats)

        # A long reply (rest of the context): it grows while we watch, then stop cancels it.
        set_field(driver, "max-tokens", "")
        set_field(driver, "system", "You are terse.")
        send(driver, "Tell me a long story.")
        text = lambda: last_reply(driver).find_element(By.CSS_SELECTOR, ".text").get_attribute("textContent")
        wait_for(lambda: len(text()) > 0, 20)
        first_look = text()
        time.sleep(0.5)
        second_look = text()
        check("the reply streams in (grows between two looks)",
              0 < len(first_look) < len(second_look), f"{first_look!r} {second_look!r}")
        check("KV blocks in use mid-reply", metric(metrics_port, "tpserve_kv_blocks_used") > 0)
        driver.find_element(By.ID, "stop").click()
        check("stop: the page says stopped and Send is back",
              wait_for(lambda: "stopped" in last_reply(driver).text, 10)
              and driver.find_element(By.ID, "send").is_enabled())
        stopped_at = text()
        freed = wait_for(lambda: metric(metrics_port, "tpserve_kv_blocks_used") == 0
                         and metric(metrics_port, "tpserve_requests_in_flight") == 0, 10)
        check("stop: the server dropped the request and freed its KV blocks", freed)
        time.sleep(0.3)
        check("stop: the reply stops growing", text() == stopped_at)
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "chat_page.png")
        driver.save_screenshot(shot)
        check(f"screenshot saved to {shot}", os.path.getsize(shot) > 0)
    finally:
        driver.quit()
        os.kill(rank0_pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    finish()


if __name__ == "__main__":
    main()
