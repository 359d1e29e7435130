"""The explorer page's size and decode time in a real browser.

    PYTHONPATH=. python benchmarks/bench_explorer.py RUN [--rounds 5] [--moves 60]

Writes RUN's explorer page (`minivae explore`) into a temporary directory,
opens it from disk in headless Chromium (Debian's chromium and
chromium-driver, and selenium), moves the
sliders --moves times per round through the page's own input events, and
prints the page's median decode time of each round (the page times every
decode it draws, `window.minivaeExplorer.decodeMs`, the median of its last
50), then the median over the rounds.  The target for the paper's 784-500-20
model is under 5 ms a decode, and a page under 2.5 MB.
"""
import argparse
import shutil
import statistics
import sys
import tempfile
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np

from minivae.cli import main as minivae


def browser():
    """A headless Chromium driven by selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def run(page, rounds, moves):
    """The page's median decode time (ms) after each round of `moves` slider moves."""
    from selenium.webdriver.common.by import By
    driver = browser()
    try:
        driver.get(page.resolve().as_uri())
        sliders = driver.find_elements(By.CSS_SELECTOR, "input[type=range].zdim")
        lo, hi = float(sliders[0].get_attribute("min")), float(sliders[0].get_attribute("max"))
        medians = []
        for r in range(rounds):
            for k, value in enumerate(np.linspace(lo, hi, moves) * (-1) ** r):
                driver.execute_script(
                    "arguments[0].value = String(arguments[1]);"
                    "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
                    sliders[k % len(sliders)], float(value))
            medians.append(driver.execute_script("return window.minivaeExplorer.decodeMs;"))
        return medians
    finally:
        driver.quit()


def main():
    """Parse the command line, write the page, time it, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory (or checkpoint) of minivae train")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--moves", type=int, default=60)
    args = parser.parse_args()
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        sys.exit("bench_explorer: needs Debian's chromium and chromium-driver "
                 "(apt-get install chromium chromium-driver) and selenium (pip install selenium)")
    page = Path(tempfile.mkdtemp()) / "explorer.html"
    with redirect_stdout(StringIO()):
        if minivae(["explore", args.run, "--out", str(page)]) != 0:
            sys.exit(f"bench_explorer: minivae explore {args.run} failed")
    medians = run(page, args.rounds, args.moves)
    print(f"page of {args.run}: {page.stat().st_size / 1e6:.2f} MB")
    print("median decode per round (ms): " + ", ".join(f"{m:.3f}" for m in medians))
    print(f"median over {args.rounds} rounds: {statistics.median(medians):.3f} ms "
          f"(the browser's timer resolves about 0.1 ms)")


if __name__ == "__main__":
    main()
